"""What commands return: one object that renders as plain text, JSON or HTML.

The terminal prints ``text()`` (or ``to_json()`` with ``--json``); IPython
shows ``_repr_html_`` in a notebook. Values are already masked: nothing here
ever sees a secret.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ACTIVE_MARK = "●"


def human_size(size: float) -> str:
    """Bytes as people read them: ``512 B``, ``3.4 kB``, ``109.0 MB``."""
    if size < 1000:
        return f"{size:.0f} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} TB"


class Output:
    data: Any
    #: Values a magic puts into the user's namespace (``%pipeline load``); unused in a terminal.
    namespace: dict[str, Any] | None = None

    def text(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        raise NotImplementedError

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, default=str)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return f'<div class="stackmagic-output">{self.html()}</div>'


@dataclass(repr=False)
class Message(Output):
    message: str
    data: Any = None

    def __post_init__(self) -> None:
        if self.data is None:
            self.data = {"message": self.message}

    def text(self) -> str:
        return self.message

    def html(self) -> str:
        return f"<p>{html.escape(self.message)}</p>"


@dataclass(repr=False)
class Table(Output):
    """Rows under a title; ``highlight`` rows (the active stack, say) are marked."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    data: Any = None
    highlight: frozenset[int] = frozenset()
    empty: str = "none"

    def text(self) -> str:
        if not self.rows:
            return f"{self.title}: {self.empty}"
        table = [list(self.columns), *([str(cell) for cell in row] for row in self.rows)]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.columns))]
        marks = [
            "  ",
            *(f"{ACTIVE_MARK} " if i in self.highlight else "  " for i in range(len(self.rows))),
        ]
        lines = [
            (mark + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))).rstrip()
            for mark, row in zip(marks, table)
        ]
        return "\n".join([f"{self.title}:", *lines])

    def html(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in self.columns)
        body = []
        for index, row in enumerate(self.rows):
            active = index in self.highlight
            style = " style='font-weight:bold;background:rgba(46,125,50,0.12)'" if active else ""
            cells = "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>" for c in row)
            mark = ACTIVE_MARK if active else ""
            body.append(f"<tr{style}><td>{mark}</td>{cells}</tr>")
        if not body:
            body.append(
                f"<tr><td colspan='{len(self.columns) + 1}'>{html.escape(self.empty)}</td></tr>"
            )
        return (
            f"<b>{html.escape(self.title)}</b>"
            f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )


@dataclass(repr=False)
class Fields(Output):
    """A titled list of labelled values, such as one component's options."""

    title: str
    fields: Sequence[tuple[str, str]]
    data: Any = None
    parts: Sequence[Output] = field(default_factory=tuple)
    #: Put each value under its label, for long labels and prose values (help texts).
    stacked: bool = False

    def text(self) -> str:
        width = max((len(label) for label, _ in self.fields), default=0)
        lines = [f"{self.title}:"]
        if self.stacked:
            for label, value in self.fields:
                lines += [f"  {label}", *([f"      {value}"] if value else [])]
        else:
            lines += [f"  {label.ljust(width)}  {value}" for label, value in self.fields]
        for part in self.parts:
            lines += ["  " + line for line in part.text().splitlines()]
        return "\n".join(lines)

    def html(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(label)}</th>"
            f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            for label, value in self.fields
        )
        nested = "".join(
            f"<div style='margin-left:1.5em'>{part.html()}</div>" for part in self.parts
        )
        return f"<b>{html.escape(self.title)}</b><table>{rows}</table>{nested}"

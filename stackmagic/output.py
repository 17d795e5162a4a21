"""What commands return: one object that renders as plain text, JSON or HTML.

The terminal prints ``text()`` (or ``to_json()`` with ``--json``), or, on a
screen that shows colour, what ``__rich__`` makes (rich's protocol: tables and
statuses in colour); IPython shows ``_repr_html_`` in a notebook. Values are
already masked: nothing here ever sees a secret. rich is imported only by
``__rich__``, so a command whose output goes to a file or a pipe never loads it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

ACTIVE_MARK = "●"

#: How a terminal colours each status of a run or a step (rich styles), as the Lab does.
STATUS_STYLES = {
    "pending": "bright_black",
    "running": "blue",
    "completed": "green",
    "cached": "cyan",
    "failed": "red",
    "preempted": "yellow",
    "skipped": "bright_black",
    "cancelled": "dark_orange",
    "cancelling": "dark_orange",
}


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

    def __rich__(self) -> RenderableType:
        """What a terminal that shows colour prints: the plain text, for outputs with no
        styling of their own."""
        from rich.text import Text

        return Text(self.text())

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

    def __rich__(self) -> RenderableType:
        from rich.text import Text

        styled = Text()
        for line in self.message.splitlines(keepends=True):
            styled.append(line, style="yellow" if line.startswith("warning: ") else "")
        return styled

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

    def __rich__(self) -> RenderableType:
        from rich import box
        from rich.console import Group
        from rich.table import Table as RichTable
        from rich.text import Text

        if not self.rows:
            return Text.assemble((f"{self.title}:", "bold"), f" {self.empty}")
        table = RichTable(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            header_style="bold",
            pad_edge=False,
            padding=(0, 1),
        )
        if self.highlight:
            table.add_column("", width=1, no_wrap=True)
        for column in self.columns:
            table.add_column(column, overflow="fold")
        statuses = [i for i, column in enumerate(self.columns) if column == "status"]
        for index, row in enumerate(self.rows):
            cells = [
                status_text(str(cell)) if i in statuses else Text(str(cell))
                for i, cell in enumerate(row)
            ]
            active = index in self.highlight
            marks = [ACTIVE_MARK if active else ""] if self.highlight else []
            table.add_row(*marks, *cells, style="bold green" if active else None)
        return Group(Text(f"{self.title}:", style="bold"), table)

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

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table as RichTable
        from rich.text import Text

        def value_of(label: str, value: str) -> Text:
            return status_text(value) if label == "status" else Text(value)

        if self.stacked:
            listed: RenderableType = Group(
                *(
                    Group(
                        Text(label, style="bold"),
                        *([_indented(Text(value), 4)] if value else []),
                    )
                    for label, value in self.fields
                )
            )
        else:
            grid = RichTable.grid(padding=(0, 2))
            grid.add_column(style="bold", no_wrap=True)
            grid.add_column(overflow="fold")
            for label, value in self.fields:
                grid.add_row(label, value_of(label, value))
            listed = grid
        return Group(
            Text(f"{self.title}:", style="bold"),
            _indented(listed),
            *(_indented(part) for part in self.parts),
        )

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


def status_text(value: str) -> Text:
    """A status (``failed: why``) coloured by its first word, as the Lab colours it."""
    from rich.text import Text

    word = value.split(":", 1)[0].split(" ", 1)[0]
    return Text(value, style=STATUS_STYLES.get(word, ""))


def _indented(renderable: RenderableType, columns: int = 2) -> RenderableType:
    """``renderable`` moved right, as the plain text indents what a title holds."""
    from rich.padding import Padding

    return Padding(renderable, (0, 0, 0, columns), expand=False)

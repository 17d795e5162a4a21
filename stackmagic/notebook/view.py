"""How ``pipeline show`` presents a pipeline: a table, and the DAG as Mermaid in a notebook."""

from __future__ import annotations

from ..output import Table
from .spec import PipelineSpec, Step


def pipeline_table(spec: PipelineSpec) -> PipelineView:
    steps = [spec.steps[name] for name in spec.order()]
    rows = [
        [
            step.name,
            ", ".join(str(cell + 1) for cell in step.cells),
            ", ".join(f"{name} ({producer})" for name, producer in step.inputs.items()) or "-",
            ", ".join(step.parameters) or "-",
            ", ".join(step.outputs) or "-",
            ", ".join(step.upstream) or "-",
        ]
        for step in steps
    ]
    parameters = ", ".join(f"{k}={v!r}" for k, v in spec.parameters.items()) or "none"
    return PipelineView(
        spec=spec,
        title=f"Pipeline {spec.name} ({spec.notebook.name}), parameters: {parameters}",
        columns=["step", "cells", "inputs", "parameters", "outputs", "upstream"],
        rows=rows,
        data=spec.to_json(),
    )


def _labels(step: Step, upstream: str) -> list[str]:
    passed = [name for name, producer in step.inputs.items() if producer == upstream]
    read = [name for name in passed if name not in step.changes]
    changed = [name for name in passed if name in step.changes]
    files = [f"file {path}" for path in step.files.get(upstream, [])]
    return read + ([f"changes {', '.join(changed)}"] if changed else []) + files


class PipelineView(Table):
    """A pipeline table that also draws the DAG: Mermaid for JupyterLab, arrows for a terminal."""

    def __init__(self, spec: PipelineSpec, **table: object) -> None:
        super().__init__(**table)  # type: ignore[arg-type]
        self.spec = spec

    def edges(self) -> list[tuple[str, str, list[str]]]:
        """``(upstream, step, labels)``: the names passed, ``changes df`` where the step edits one."""
        return [
            (upstream, step.name, _labels(step, upstream))
            for step in (self.spec.steps[name] for name in self.spec.order())
            for upstream in step.upstream
        ]

    def text(self) -> str:
        lines = [super().text(), "DAG:"]
        lines += [
            f"  {a} -> {b}" + (f"  [{', '.join(data)}]" if data else "")
            for a, b, data in self.edges()
        ]
        lone = [n for n in self.spec.steps if not any(n in (a, b) for a, b, _ in self.edges())]
        lines += [f"  {name}" for name in lone]
        lines += [f"warning: {warning}" for warning in self.spec.warnings]
        return "\n".join(lines)

    def mermaid(self) -> str:
        lines = ["flowchart TD"]
        lines += [f"  {name}[{name}]" for name in self.spec.order()]
        for a, b, data in self.edges():
            lines.append(f"  {a} -->|{', '.join(data)}| {b}" if data else f"  {a} -.-> {b}")
        return "\n".join(lines)

    def _repr_html_(self) -> None:  # type: ignore[override]
        """No HTML, so JupyterLab shows the Markdown below, which draws the Mermaid diagram."""
        return None

    def _repr_markdown_(self) -> str:
        header = "| " + " | ".join(self.columns) + " |\n|" + "---|" * len(self.columns) + "\n"
        body = "".join("| " + " | ".join(row) + " |\n" for row in self.rows)
        warnings = "".join(f"\n> **warning:** {warning}\n" for warning in self.spec.warnings)
        return f"**{self.title}**\n\n{header}{body}\n```mermaid\n{self.mermaid()}\n```\n{warnings}"

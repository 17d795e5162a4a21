"""Run All versus a pipeline run: what each step cell printed, side by side.

The product's promise (DESIGN.md, "The rule behind it") is that a pipeline run
computes what running the notebook top to bottom computes. The only honest
yardstick is to do both and compare what every ``%%step`` cell printed: the
notebook in a real kernel with nbconvert, the pipeline with ``stackmagic.run``
on the default local stack, whose executed step notebooks the artifact store
keeps. Cells are paired by the ``{"stackmagic": {"cell": N}}`` metadata the
exporter puts on each user cell (N: 1-based index in the original notebook).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

import stackmagic
from stackmagic.open_stack import OpenStack
from stackmagic.pipelines import PipelineFailed, PipelineRun
from stackmagic.registry import Registry

#: Writes a notebook (and the files beside it it reads) into a folder; returns the notebook.
Writer = Callable[[Path], Path]

ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")
COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def printed(outputs: list[Mapping[str, Any]]) -> str:
    """What a cell showed as text: stdout, text/plain of results and displays, errors in one line.

    stderr is left out (warnings carry paths and line numbers); memory addresses are
    masked, as two processes never agree on them.
    """
    parts: list[str] = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream" and output.get("name") == "stdout":
            parts.append(output.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            text = output.get("data", {}).get("text/plain")
            if text is not None:
                parts.append((text if isinstance(text, str) else "".join(text)) + "\n")
        elif kind == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}\n")
    return ADDRESS.sub("0x…", "".join(parts))


def step_cells(notebook: Path) -> dict[int, tuple[str, str]]:
    """The ``%%step`` cells of a saved notebook: 1-based cell index -> (step name, source)."""
    document = nbformat.read(notebook, as_version=4)
    found: dict[int, tuple[str, str]] = {}
    for index, cell in enumerate(document.cells, start=1):
        if cell.cell_type == "code" and cell.source.startswith("%%step "):
            found[index] = (cell.source.split()[1], cell.source)
    return found


class RunAll:
    """Run All of a saved notebook with nbconvert, in its folder, in a process of its own.

    A separate process lets it go while the pipeline runs in this one (threads would race
    on IPython's lazy imports) and leaves nothing of it in the test's interpreter.
    """

    def __init__(self, notebook: Path, timeout: float = 60) -> None:
        self.notebook = notebook
        self.executed = notebook.with_name(f"{notebook.stem}.run-all.ipynb")
        self.timeout = timeout
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nbconvert",
                "--to",
                "notebook",
                "--execute",
                "--ExecutePreprocessor.kernel_name=python3",
                f"--ExecutePreprocessor.timeout={int(timeout)}",
                "--output",
                self.executed.name,
                notebook.name,
            ],
            cwd=notebook.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> None:
        """End it early (the pipeline side broke); its kernel exits with its parent."""
        self.process.terminate()
        self.process.communicate()

    def printed(self) -> dict[int, str]:
        """What each code cell printed: cell index -> text.

        Run All is the yardstick, so it must run clean: an error in any cell raises.
        """
        _, err = self.process.communicate(timeout=self.timeout * 2)
        assert self.process.returncode == 0, (
            f"Run All of {self.notebook.name} failed, so there is nothing to compare with:\n"
            + COLOURS.sub("", err)[-4000:]
        )
        document = nbformat.read(self.executed, as_version=4)
        return {
            index: printed(cell.get("outputs", []))
            for index, cell in enumerate(document.cells, start=1)
            if cell.cell_type == "code"
        }


def run_pipeline(notebook: Path, **options: Any) -> PipelineRun:
    """``stackmagic.run``; a failed step is a result to compare too, not an exception."""
    try:
        return stackmagic.run(notebook, **options)
    except PipelineFailed as failed:
        return failed.run


def pipeline_printed(run: PipelineRun, project: Path) -> dict[int, str]:
    """What each user cell printed in the run's executed step notebooks: cell index -> text.

    The notebooks are read through the stack's artifact store, as any orchestrator keeps them.
    A step that did not run (skipped) has no notebook and so no entry.
    """
    texts: dict[int, str] = {}
    with OpenStack.open(Registry.open(project)) as stack:
        for step in run.record.steps:
            if not step.notebook_uri:
                continue
            executed = nbformat.reads(
                stack.artifact_store.read_bytes(step.notebook_uri).decode("utf-8"), as_version=4
            )
            for cell in executed.cells:
                index = cell.get("metadata", {}).get("stackmagic", {}).get("cell")
                if index is not None:
                    texts[index] = printed(cell.get("outputs", []))
    return texts


@dataclass
class Comparison:
    """Both runs of one notebook, and what their step cells printed."""

    notebook: Path
    run: PipelineRun
    cells: dict[int, tuple[str, str]]
    run_all: dict[int, str]
    pipeline: dict[int, str]

    def __repr__(self) -> str:
        return f"<Comparison of {self.notebook.name}: pipeline run {self.run.status}>"

    @property
    def step_names(self) -> list[str]:
        """The notebook's steps, in order of their first cell."""
        return list(dict.fromkeys(name for name, _ in self.cells.values()))

    def notebook_printed(self, step: str) -> str:
        """All the Run All text of a step's cells (for checks that the harness itself works)."""
        return "".join(self.run_all[i] for i, (name, _) in self.cells.items() if name == step)

    def differences(self) -> list[str]:
        """One block per step cell whose pipeline text is not the notebook's."""
        blocks = []
        for index, (name, source) in self.cells.items():
            expected = self.run_all.get(index, "")
            got = self.pipeline.get(index)
            if got == expected:
                continue
            status = self.run.steps[name].status if name in self.run.steps else "absent"
            shown = got if got is not None else f"(no executed cell: step {status})\n"
            blocks.append(
                f"--- cell {index} of {self.notebook.name}: {source.splitlines()[0]} "
                f"(step {status}) ---\n"
                f"Run All printed:\n{_indent(expected)}\n"
                f"pipeline printed:\n{_indent(shown)}"
            )
        return blocks

    def assert_same(self) -> None:
        """Every step cell printed the same in both, or a message showing each difference."""
        blocks = self.differences()
        assert not blocks, (
            f"the pipeline run ({self.run.status}) printed something else than Run All in "
            f"{len(blocks)} of {len(self.cells)} step cells of {self.notebook.name}:\n"
            + "\n".join(blocks)
        )


def _indent(text: str) -> str:
    return "\n".join(f"    | {line}" for line in (text.rstrip("\n") or "(nothing)").splitlines())


def compare(project: Path, write: Writer, run_all_folder: Path) -> Comparison:
    """Run All of the notebook ``write`` makes, and a pipeline run of it in ``project``.

    Run All works in its own copy (``run_all_folder``): files it writes must not be there
    for the pipeline's steps to find. The two runs go at the same time, to keep tests short.
    """
    run_all_folder.mkdir(parents=True, exist_ok=True)
    interactive = write(run_all_folder)
    notebook = write(project)
    run_all = RunAll(interactive)
    try:
        run = run_pipeline(notebook)
    except BaseException:
        run_all.stop()
        raise
    return Comparison(
        notebook, run, step_cells(notebook), run_all.printed(), pipeline_printed(run, project)
    )

"""A notebook's pipeline, read from the saved ``.ipynb``.

Code cells before the first ``%%step`` are *setup* (every step runs them);
the cell tagged ``parameters`` (papermill's convention) holds the
parameters; ``%%step`` cells form steps (cells with the same name, one step,
in order); other cells after the first step are *exploration* and left out,
as are cells tagged ``skip`` or starting with ``%%notebook-only``. A name a
step reads that an earlier step binds or changes is an input, and an edge of
the DAG (``dataflow`` has the rule); ``--after`` adds edges without data.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StackmagicError, UsageError
from ..json_values import is_finite
from . import file_edges
from .analysis import analyse
from .dataflow import file_mentions, resolve
from .steps import StepSettings, is_notebook_only, parse_step_line, split_step_cell

PARAMETERS_TAG = "parameters"
#: Cells the pipeline leaves out: they prepare the machine (``!pip install ...``), not the data.
#: The tag is Kale's; ``%%notebook-only`` on the cell's first line does the same.
SKIP_TAG = "skip"
#: Names stackmagic gives its own inputs of a step (its context, Kubeflow's run options).
RESERVED_PREFIX = "stackmagic_"


@dataclass
class Step:
    settings: StepSettings
    cells: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    #: input name -> the step that produces it
    inputs: dict[str, str] = field(default_factory=dict)
    parameters: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    #: What a final step (one no step reads from) binds: kept as its results where defined.
    results: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)
    #: Names from before the step that it may change in place: later steps get its version.
    changes: list[str] = field(default_factory=list)
    #: Import statements of earlier steps whose names this step uses: run again, never passed.
    imports: list[str] = field(default_factory=list)
    #: Functions earlier steps define that this step uses: defined again here, never passed,
    #: so they read and set this step's names, as in the notebook.
    definitions: dict[str, str] = field(default_factory=dict)
    #: Inputs it neither binds nor is seen to change: checked at run time for unseen changes.
    watched: list[str] = field(default_factory=list)
    #: Files earlier steps write that it mentions, by the step that writes them last before it.
    files: dict[str, list[str]] = field(default_factory=dict)
    #: Texts its code holds that may name files it reads; None if it reads files it does not name.
    mentions: list[str] | None = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def source(self) -> str:
        return "\n\n".join(self.sources)


@dataclass
class PipelineSpec:
    name: str
    notebook: Path
    #: (cell index, source) of each setup cell, in notebook order
    setup_cells: list[tuple[int, str]]
    #: How many setup cells come before the parameters cell (which the steps run there).
    parameters_position: int
    parameters_source: str
    #: Every name the parameters cell binds: what ``-p NAME VALUE`` may set.
    parameter_names: list[str]
    #: The defaults known from the cell's text (see ``_parameter_values``).
    parameters: dict[str, Any]
    #: Parameters the setup cells read: every step depends on them.
    setup_parameters: list[str]
    #: Texts the setup and parameters cells hold that may name files; None: files they do not name.
    setup_mentions: list[str] | None
    steps: dict[str, Step]
    warnings: list[str]
    kernel_name: str = "python3"

    @property
    def setup(self) -> list[str]:
        return [source for _, source in self.setup_cells]

    def order(self) -> list[str]:
        """Steps in an order that runs every step after its upstream ones (notebook order on ties)."""
        done: list[str] = []
        waiting = list(self.steps)
        while waiting:
            ready = next(name for name in waiting if set(self.steps[name].upstream) <= set(done))
            done.append(ready)
            waiting.remove(ready)
        return done

    def source_hash(self, step: str) -> str:
        """Hash of the code a step runs: the setup cells and its own body."""
        digest = hashlib.sha256()
        for source in (*self.setup, self.steps[step].source):
            digest.update(source.encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "notebook": str(self.notebook),
            "parameters": self.parameters,
            "steps": [
                {
                    "name": step.name,
                    "cells": [cell + 1 for cell in step.cells],
                    "inputs": step.inputs,
                    "parameters": step.parameters,
                    "outputs": step.outputs,
                    "changes": step.changes,
                    "imports": step.imports,
                    "definitions": list(step.definitions),
                    "files": step.files,
                    "upstream": step.upstream,
                    "settings": {
                        key: value
                        for key, value in vars(step.settings).items()
                        if key != "name" and value not in ("", 0, False, ())
                    },
                    "source_hash": self.source_hash(step.name),
                }
                for step in (self.steps[name] for name in self.order())
            ],
            "warnings": self.warnings,
        }


def load_pipeline(notebook: Path) -> PipelineSpec:
    """Parse and check a notebook's pipeline; every problem is one StackmagicError."""
    cells, kernel_name = _code_cells(notebook)
    setup: list[tuple[int, str]] = []
    parameters_source = ""
    parameters_position = 0
    steps: dict[str, Step] = {}
    exploration: list[tuple[int, str]] = []
    for index, source, tags in cells:
        where = f"cell {index + 1} of {notebook.name}"
        if SKIP_TAG in tags or is_notebook_only(source):
            continue
        if PARAMETERS_TAG in tags:
            parameters_source = source
            parameters_position = len(setup)
            continue
        step_cell = split_step_cell(source)
        if step_cell is None:
            if steps:
                exploration.append((index, source))
            else:
                setup.append((index, source))
            continue
        arguments, body = step_cell
        try:
            settings = parse_step_line(arguments)
        except UsageError as error:
            raise StackmagicError(f"{where}: %%step {arguments}: {error}") from None
        _add_cell(steps, settings, index, body, where)
    if not steps:
        raise StackmagicError(
            f"{notebook.name} has no steps: start a code cell with `%%step NAME` to make it one "
            "(save the notebook first)"
        )
    parameter_names = sorted(analyse(parameters_source, "the parameters cell").binds)
    reserved = [name for name in parameter_names if name.startswith(RESERVED_PREFIX)]
    if reserved:
        raise StackmagicError(
            f"parameter {reserved[0]!r}: names starting with {RESERVED_PREFIX!r} are stackmagic's "
            "own (the inputs it gives every step); rename it in the parameters cell"
        )
    setup_sources = [source for _, source in setup]
    setup_parameters, warnings = resolve(
        notebook.name, setup_sources, parameters_source, steps, exploration
    )
    spec = PipelineSpec(
        name=_pipeline_name(notebook),
        notebook=notebook,
        setup_cells=setup,
        parameters_position=parameters_position,
        parameters_source=parameters_source,
        parameter_names=parameter_names,
        parameters=_parameter_values(parameters_source),
        setup_parameters=setup_parameters,
        setup_mentions=file_mentions(
            "\n".join([*setup_sources, parameters_source]),
            file_edges.constants([*setup_sources, parameters_source]),
        ),
        steps=steps,
        warnings=warnings,
        kernel_name=kernel_name,
    )
    _check_dag(spec)
    return spec


def _code_cells(notebook: Path) -> tuple[list[tuple[int, str, list[str]]], str]:
    """The code cells (index, source, tags) and the name of the notebook's kernel.

    Only a regular file is read: a device (``/dev/zero``), a pipe or a folder would never end
    or never be a notebook.
    """
    if not notebook.exists():
        raise StackmagicError(f"no notebook at {notebook}")
    if not notebook.is_file():
        raise StackmagicError(f"{notebook} is not a file: give the path of a saved .ipynb notebook")
    try:
        document = json.loads(notebook.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StackmagicError(
            f"{notebook} is not a readable notebook ({error}); open and save it in Jupyter"
        ) from None
    cells = document.get("cells") if isinstance(document, dict) else None
    if isinstance(document, dict) and document.get("nbformat") == 3 and "worksheets" in document:
        raise StackmagicError(
            f"{notebook} is an old nbformat 3 notebook; convert it with `jupyter nbconvert --to "
            f"notebook --nbformat 4 --inplace {notebook.name}`, or open and save it in Jupyter"
        )
    if not isinstance(cells, list):
        raise StackmagicError(f"{notebook} is not a notebook: it has no list of cells")
    found = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        tags = cell.get("metadata", {}).get("tags", [])
        found.append((index, source, list(tags) if isinstance(tags, list) else []))
    kernelspec = document.get("metadata", {}).get("kernelspec", {})
    kernel_name = kernelspec.get("name") if isinstance(kernelspec, dict) else None
    return found, kernel_name if isinstance(kernel_name, str) and kernel_name else "python3"


def _add_cell(
    steps: dict[str, Step], settings: StepSettings, index: int, body: str, where: str
) -> None:
    clash = next(
        (name for name in steps if name.lower() == settings.name.lower() and name != settings.name),
        None,
    )
    if clash:
        raise StackmagicError(
            f"{where}: step {settings.name!r} differs from step {clash!r} only in case; "
            "step names become file names, so rename one"
        )
    step = steps.get(settings.name)
    if step is None:
        steps[settings.name] = Step(settings, [index], [body])
        return
    if settings not in (step.settings, StepSettings(settings.name)):
        raise StackmagicError(
            f"{where}: step {settings.name!r} is declared again with other settings; "
            "a step's later cells take `%%step NAME` alone (settings go on its first cell)"
        )
    step.cells.append(index)
    step.sources.append(body)


def _check_dag(spec: PipelineSpec) -> None:
    for step in spec.steps.values():
        for after in step.settings.after:
            if after == step.name:
                raise StackmagicError(f"step {step.name!r} cannot run --after itself")
            if after not in spec.steps:
                raise StackmagicError(
                    f"step {step.name!r} runs --after {after!r}, which is no step of this notebook "
                    f"(steps: {', '.join(spec.steps)})"
                )
    cycle = _find_cycle(spec)
    if cycle:
        raise StackmagicError(
            f"the steps form a cycle: {' -> '.join(cycle)}; remove an --after or reorder the cells"
        )


def _find_cycle(spec: PipelineSpec) -> list[str] | None:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "visiting"
        path.append(name)
        for upstream in spec.steps[name].upstream:
            if state.get(upstream) == "visiting":
                return [*path[path.index(upstream) :], upstream][::-1]
            if upstream not in state:
                found = visit(upstream)
                if found:
                    return found
        state[name] = "done"
        path.pop()
        return None

    for name in spec.steps:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def _parameter_values(source: str) -> dict[str, Any]:
    """Defaults of the parameters cell that can be told from its text alone.

    A name bound once, by ``name = value``, has that value (a literal, else its
    source text). A name bound any other way (``a, b = 1, 2``, ``lr *= 2``,
    inside an ``if``) has no known default: its steps' cache keys take the
    whole cell's text instead.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    simple: dict[str, Any] = {}
    bound_otherwise: set[str] = set()
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(target := node.targets[0], ast.Name)
            and target.id not in simple
        ):
            try:
                simple[target.id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                simple[target.id] = ast.unparse(node.value)
            if not is_finite(simple[target.id]):  # `1e999`: its text, which JSON can keep
                simple[target.id] = ast.get_source_segment(source, node.value)
            continue
        bound_otherwise |= analyse(ast.unparse(node), "the parameters cell").binds
    return {name: value for name, value in simple.items() if name not in bound_otherwise}


def _pipeline_name(notebook: Path) -> str:
    """The notebook's file name, made safe for folder and database names."""
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in notebook.stem).strip("-")
    if not name:  # `...ipynb`, ` .ipynb`: every such notebook would share one pipeline's runs
        raise StackmagicError(
            f"the file name {notebook.name!r} gives no pipeline name (the runs are kept under the "
            "name before .ipynb, which needs a letter or digit); rename the notebook, train.ipynb say"
        )
    return name

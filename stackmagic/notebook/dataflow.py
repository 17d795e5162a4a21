"""Where each step's names come from: the rule that makes a pipeline compute what the notebook does.

A step receives each name as it would be at that point of a top-to-bottom
run of the notebook: from the last earlier step that binds it or changes it
in place (``effects``), imported again if an earlier step imported it, gone
if an earlier step deleted it. Files one step writes and a later one names
order them too (``file_edges``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import StackmagicError
from . import file_edges
from .analysis import Definition, NameUse, analyse
from .effects import Call, FunctionEffects, call_effects
from .randomness import seeded_generator_warnings

if TYPE_CHECKING:
    from .spec import Step


def resolve(
    notebook: str,
    setup: list[str],
    parameters_source: str,
    steps: dict[str, Step],
    exploration: list[tuple[int, str]],
) -> tuple[list[str], list[str]]:
    """Fill in each step's inputs, parameters and outputs; returns the setup's parameters and warnings.

    A step gets each name from the last earlier step that binds it or changes it in place
    (``effects``); a name an earlier step imported is imported again; one it deleted is gone.
    """
    parameter_names = set(analyse(parameters_source, "the parameters cell").binds)
    setup_names: set[str] = set()
    setup_parameters: set[str] = set()
    opaque_setup = False
    functions: dict[str, FunctionEffects] = {}
    setup_uses = [
        analyse(source, f"setup cell {number + 1} of {notebook}")
        for number, source in enumerate(setup)
    ]
    for use in setup_uses:
        functions.update(use.functions)
        setup_parameters |= use.reads & parameter_names
        setup_names |= use.binds | _call_effects(use.calls, functions)[0]
        opaque_setup |= use.opaque
    explored: dict[str, int] = {}
    for index, source in exploration:
        for name in analyse(source, f"cell {index + 1} of {notebook}").binds:
            explored.setdefault(name, index)
    step_uses = {step.name: _step_use(step, notebook) for step in steps.values()}
    modules = {name for use in (*setup_uses, *step_uses.values()) for name in use.imports}
    paths = file_edges.constants([*setup, parameters_source])
    writers: dict[str, str] = {}

    warnings: list[str] = []
    origins = _Origins()
    known = _Known(parameter_names, setup_names, opaque_setup, explored)
    bound: dict[str, set[str]] = {}
    for step in steps.values():
        use = step_uses[step.name]
        functions.update(use.functions)
        call_binds, call_changes = _call_effects(use.calls, functions)
        binds = set(use.binds) | call_binds
        maybe = {name for name in use.maybe_changes if name in origins.producers}  # steps made
        changes = (set(use.changes) | maybe | call_changes) - modules - use.binds
        # what a call binds (``global config`` in the function) the step then reads from it
        warnings += origins.give(step, (use.reads - call_binds) | changes, known)
        for mentioned in sorted(file_edges.mentioned_paths(step.source, paths)):
            for path, writer in writers.items():
                if file_edges.same_file(mentioned, path) and mentioned not in step.files.get(
                    writer, []
                ):
                    step.files.setdefault(writer, []).append(mentioned)
        writers.update(dict.fromkeys(file_edges.written_paths(step.source, paths), step.name))
        step.mentions = file_mentions(step.source, paths)
        step.changes = sorted(changes)
        step.watched = sorted(set(step.inputs) - binds - changes)  # narrowed below
        origins.left_by(step.name, use, binds, changes)
        bound[step.name] = (binds - set(use.imports) - use.deleted) | changes
    for step in steps.values():
        for name, producer in step.inputs.items():
            if name not in steps[producer].outputs:
                steps[producer].outputs.append(name)
        step.upstream = list(
            dict.fromkeys([*step.inputs.values(), *step.files, *step.settings.after])
        )
    names = list(steps)
    for position, step in enumerate(steps.values()):  # only a change a later step would see matters
        later_reads = {name for other in names[position + 1 :] for name in steps[other].inputs}
        step.watched = [name for name in step.watched if name in later_reads]
        step.outputs.sort()
        if not step.outputs:
            step.results = sorted(name for name in bound[step.name] if not name.startswith("_"))
    warnings += seeded_generator_warnings(
        dict(zip(setup, setup_uses)), step_uses, {step.name: step.source for step in steps.values()}
    )
    return sorted(setup_parameters), warnings


@dataclass(frozen=True)
class _Known:
    """Names defined before every step: parameters and the setup's (all, if it is opaque)."""

    parameters: set[str]
    setup: set[str]
    opaque_setup: bool
    #: names only exploration cells (after the first step, not steps) bind, by cell index
    explored: dict[str, int]


@dataclass
class _Origins:
    """Where each name comes from at this point of the notebook, as steps leave it."""

    #: the last step that bound or changed it
    producers: dict[str, str] = field(default_factory=dict)
    #: bound last by a step's import, or def: imported or defined again where used
    imported: dict[str, str] = field(default_factory=dict)
    defined: dict[str, Definition] = field(default_factory=dict)
    deleted_by: dict[str, str] = field(default_factory=dict)

    def give(self, step: Step, names: Iterable[str], known: _Known) -> list[str]:
        """Fill in where ``step`` gets each name it reads; returns warnings.

        A function defined again reads what its body reads, so those names are given too.
        """
        warnings = []
        pending, seen = sorted(names, reverse=True), set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self.producers:
                step.inputs[name] = self.producers[name]
            elif name in self.imported:
                step.imports.append(self.imported[name])
            elif name in self.defined:
                step.definitions[name] = self.defined[name].source
                pending += sorted(self.defined[name].reads - seen, reverse=True)
            elif name in self.deleted_by:
                raise StackmagicError(
                    f"step {step.name!r} (cell {step.cells[0] + 1}) reads {name!r}, which step "
                    f"{self.deleted_by[name]!r} deletes before it; define it again or drop the `del`"
                )
            elif name in known.parameters:
                step.parameters.append(name)
            elif name in known.setup or known.opaque_setup:
                continue
            elif name in known.explored:
                warnings.append(
                    f"step {step.name!r} reads {name!r}, which only cell {known.explored[name] + 1} "
                    "defines; that cell comes after the first step and is not a step, so the "
                    "pipeline leaves it out: make it a step or move it before the first step"
                )
            else:
                raise StackmagicError(
                    f"step {step.name!r} (cell {step.cells[0] + 1}) reads {name!r}, which no setup "
                    "cell, parameter or earlier step defines; define it before this step"
                )
        step.parameters.sort()
        return warnings

    def left_by(self, step: str, use: NameUse, binds: set[str], changes: set[str]) -> None:
        """What ``step`` leaves: names it binds or changes, imports, definitions, deletions."""
        again = {**use.imports, **use.definitions}
        for name in (binds - set(again)) | changes:
            self._forget(name)
            self.producers[name] = step
        for name, statement in use.imports.items():
            self._forget(name)
            self.imported[name] = statement
        for name, definition in use.definitions.items():
            if name not in changes:
                self._forget(name)
                self.defined[name] = definition
        for name in use.deleted:
            self._forget(name)
            self.deleted_by[name] = step

    def _forget(self, name: str) -> None:
        for origin in (self.producers, self.imported, self.defined, self.deleted_by):
            origin.pop(name, None)


def file_mentions(source: str, paths: dict[str, str]) -> list[str] | None:
    """What a data file must be named like to matter to this code; None: any file may."""
    if file_edges.reads_unnamed_files(source, paths):
        return None
    return sorted(file_edges.mentioned_paths(source, paths))


def _call_effects(
    calls: tuple[Call, ...], functions: dict[str, FunctionEffects]
) -> tuple[set[str], set[str]]:
    """What calling the notebook's own functions binds and changes."""
    binds: set[str] = set()
    changes: set[str] = set()
    for call in calls:
        call_binds, call_changes = call_effects(call, functions)
        binds |= call_binds
        changes |= call_changes
    return binds, changes


def _step_use(step: Step, notebook: str) -> NameUse:
    """The step's cells as one: names read before the step binds them, and all it does."""
    reads: set[str] = set()
    binds: set[str] = set()
    changes: set[str] = set()
    maybe_changes: set[str] = set()
    imports: dict[str, str] = {}
    definitions: dict[str, Definition] = {}
    deleted: set[str] = set()
    functions: dict[str, FunctionEffects] = {}
    calls: list[Call] = []
    for index, source in zip(step.cells, step.sources):
        use = analyse(source, f"cell {index + 1} of {notebook} (step {step.name!r})")
        reads |= use.reads - binds
        changes |= use.changes - binds
        maybe_changes |= use.maybe_changes - binds
        binds = (binds - use.deleted) | use.binds
        deleted = (deleted - use.binds) | use.deleted
        imports = {n: s for n, s in imports.items() if n not in use.binds and n not in use.deleted}
        imports.update(use.imports)
        definitions = {
            n: d for n, d in definitions.items() if n not in use.binds and n not in use.deleted
        }
        definitions.update(use.definitions)
        functions.update(use.functions)
        calls += use.calls
    return NameUse(
        frozenset(reads),
        frozenset(binds),
        changes=frozenset(changes),
        maybe_changes=frozenset(maybe_changes - changes),
        imports=imports,
        definitions=definitions,
        deleted=frozenset(deleted),
        functions=functions,
        calls=tuple(calls),
    )

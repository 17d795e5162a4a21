"""Cache keys made of named parts, and why a step that runs was not taken from the cache.

A step's *parts* are what decides what it computes, as hashes: the setup cells
and its own cells (each with its number in the notebook), the cells
stackmagic writes around them, the parameters it or the setup reads, its
inputs' content hashes (and which step made them), the files beside the
notebook, its settings and the kernel. Its cache key hashes the parts, with
cells by content alone: a cell inserted above moves the numbers, not the
code. The parts are kept with the step run, so the next run of the step can
name the first part that differs from last time: ``code changed (cell 7)``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StackmagicError
from ..notebook.exporter import SETUP_ROLE, Bundle
from ..stores.artifacts import ArtifactStore
from ..stores.metadata import CacheHit, MetadataStore, StoredArtifact
from .dag import upstream
from .files import FILE_PREFIX

#: Files beside the notebook listed one by one in the parts, at most; more count by their digest.
LISTED_FILES = 200
FIRST_RUN = "first run"
NO_CACHE = "--no-cache"
#: Cells stackmagic writes that the parts leave out: the title names the notebook, the
#: parameters and inputs cells hold what the parts name one by one.
_UNKEYED_ROLES = ("title", "parameters", "inputs")


@dataclass(frozen=True)
class StepInputs:
    """What a step reads: artifacts by name (values, and files as ``file:PATH``), and their makers."""

    artifacts: dict[str, StoredArtifact]
    producers: dict[str, str]


def gather_inputs(
    bundle: Bundle, step: str, outputs: Mapping[str, Mapping[str, StoredArtifact]]
) -> StepInputs:
    """A step's inputs from what the steps before it left (``outputs``, by step, in order).

    The names it reads come from their producers; every file a step before it wrote is an
    input too, the later step's where two wrote one: those are put in place before it runs.
    """
    spec = bundle.steps[step]
    artifacts: dict[str, StoredArtifact] = {}
    producers: dict[str, str] = {}
    for name, producer in spec.inputs.items():
        if name not in outputs.get(producer, {}):
            raise StackmagicError(f"step {producer!r} left no output {name!r} for step {step!r}")
        artifacts[name], producers[name] = outputs[producer][name], producer
    for producer, left in outputs.items():
        for name, artifact in left.items():
            if name.startswith(FILE_PREFIX):
                artifacts[name], producers[name] = artifact, producer
    return StepInputs(artifacts, producers)


def step_parts(
    bundle: Bundle, step: str, parameters: Mapping[str, Any], inputs: StepInputs
) -> dict[str, Any]:
    """What decides what ``step`` computes, as hashes; ``inputs`` are what it reads."""
    spec = bundle.steps[step]
    cells = _bundle_cells(bundle.directory, bundle.hash)[step]
    used = sorted({*spec.parameters, *bundle.manifest["setup_parameters"]})
    # a default the cell's text does not tell (`a, b = 1, 2`): the cell's text stands in
    unknown = bundle.manifest["parameters_hash"]
    files = step_files(bundle, step)
    parts: dict[str, Any] = {
        "setup": cells.setup,
        "code": cells.own,
        "generated": cells.generated,
        "parameters": {
            name: _hash(parameters[name]) if name in parameters else unknown for name in used
        },
        "inputs": {
            name: {"from": inputs.producers[name], "hash": artifact.info.content_hash}
            for name, artifact in inputs.artifacts.items()
        },
        "sources": _hash(files),
        "settings": _hash(spec.cache_settings()),
        "kernel": bundle.manifest["kernel"],
    }
    if len(files) <= LISTED_FILES:
        parts["files"] = files
    return parts


def step_files(bundle: Bundle, step: str) -> dict[str, str]:
    """The files beside the notebook that matter to ``step``, with their hashes.

    A file some step's code names (and the setup does not) matters to the steps that name
    it; every other file, to every step; every file, to a step that reads files it does
    not name. Files left out of the bundle for their size count by size and time.
    """
    sources = bundle.manifest["sources"]
    every = {**sources["files"], **sources.get("left_out", {})}
    named = bundle.manifest.get("data_files", {})
    if bundle.steps[step].reads_unnamed_files:
        return every
    return {path: digest for path, digest in every.items() if step in named.get(path, [step])}


def code_key(parts: Mapping[str, Any]) -> str:
    """Everything but the inputs: whether a cached result can exist before the inputs are known."""
    return _hash(
        {
            "cells": [digest for _, digest in (*parts["setup"], *parts["code"])],
            **{
                name: parts[name]
                for name in ("generated", "parameters", "sources", "settings", "kernel")
            },
        }
    )


def cache_key(parts: Mapping[str, Any]) -> str:
    inputs = {name: given["hash"] for name, given in parts["inputs"].items()}
    return _hash({"code": code_key(parts), "inputs": inputs})


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()


@dataclass(frozen=True)
class _StepCells:
    #: [cell number, hash of its source] of the setup cells and of the step's own, in order
    setup: list[list[Any]]
    own: list[list[Any]]
    #: role -> hash of the cells stackmagic writes around them (what the step saves, say)
    generated: dict[str, str]


@functools.lru_cache(maxsize=8)
def _bundle_cells(directory: Path, bundle_hash: str) -> dict[str, _StepCells]:
    """Each step's cells, read from its notebook in the bundle once per bundle.

    Numbered cells are the notebook's own: the setup cells (which the exporter marks)
    and the step's.
    """
    bundle = Bundle.load(directory)
    numbered: dict[str, list[list[Any]]] = {}
    generated: dict[str, dict[str, str]] = {}
    for step in bundle.steps:
        notebook = json.loads(bundle.step_notebook(step).read_text(encoding="utf-8"))
        numbered[step], generated[step] = [], {}
        for cell in notebook["cells"]:
            source = cell.get("source", "")
            digest = hashlib.sha256(
                ("".join(source) if isinstance(source, list) else source).encode()
            ).hexdigest()
            meta = cell.get("metadata", {}).get("stackmagic", {})
            if "cell" in meta:
                numbered[step].append([meta["cell"], digest, meta.get("role") == SETUP_ROLE])
            elif meta.get("role") not in _UNKEYED_ROLES:
                generated[step][meta.get("role", "other cells")] = digest
    return {
        step: _StepCells(
            setup=[[number, digest] for number, digest, setup in cells if setup],
            own=[[number, digest] for number, digest, setup in cells if not setup],
            generated=generated[step],
        )
        for step, cells in numbered.items()
    }


# -- looking up and explaining ---------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    #: the newest earlier result with the key whose outputs are all still in the store
    hit: CacheHit | None
    #: a newer one whose outputs were deleted from the store since
    gone: CacheHit | None = None


def find_hit(
    metadata: MetadataStore, store: ArtifactStore, key: str, *, other_than: str | None
) -> Lookup:
    """The newest earlier result with this key that can be reused, and any newer one that cannot."""
    gone = None
    for hit in metadata.cache_hits(key, other_than=other_than):
        if all(store.exists(artifact.info.uri) for artifact in hit.outputs.values()):
            return Lookup(hit, gone)
        gone = gone or hit
    return Lookup(None, gone)


def why_it_runs(
    metadata: MetadataStore,
    pipeline: str,
    step: str,
    parts: Mapping[str, Any],
    gone: CacheHit | None,
    *,
    other_than: str | None,
) -> str:
    """Why a step that may use the cache found nothing there, compared with its last run."""
    previous = metadata.previous_step(pipeline, step, other_than=other_than)
    changed = difference(previous.parts, parts) if previous and previous.parts else None
    if changed:
        return changed
    if gone is not None:
        return f"cached outputs are gone (run {gone.run_id})"
    if previous is None:
        return FIRST_RUN
    if not previous.parts:  # recorded by a stackmagic that kept no parts (and made keys otherwise)
        return "cache keys changed (stackmagic upgraded)"
    return "no cached result"  # as last time, yet that result is in no cache: a race, say


def difference(before: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """The first part that differs, in words, in this order: setup cells, the step's cells,
    the cells stackmagic writes, parameters, inputs, files, settings, the kernel."""
    for kind in ("setup", "code"):
        cell = _changed_cell(before.get(kind, []), now.get(kind, []))
        if cell is not None:
            return f"{kind} changed (cell {cell})"
    checks = [
        ("generated", lambda role: f"{role} changed"),
        ("parameters", lambda name: f"parameter {name} changed"),
        (
            "inputs",
            lambda name: f"{_input_words(name)} changed (from {_producer(before, now, name)})",
        ),
    ]
    if "files" in before and "files" in now:  # else too many files to list: their digest tells
        checks.append(("files", lambda path: f"file {path} changed"))
    for kind, words in checks:
        name = _first_changed(before.get(kind, {}), now.get(kind, {}))
        if name is not None:
            return words(name)
    for kind, reason in (
        ("sources", "files beside the notebook changed"),
        ("settings", "settings changed"),
        ("kernel", "kernel changed"),
    ):
        if before.get(kind) != now.get(kind):
            return reason
    return None


def _changed_cell(before: Sequence[Sequence[Any]], now: Sequence[Sequence[Any]]) -> int | None:
    """The number of the first cell edited, added or removed; cells that only moved are equal."""
    matcher = difflib.SequenceMatcher(
        a=[digest for _, digest in before], b=[digest for _, digest in now], autojunk=False
    )
    for tag, start_before, _, start_now, end_now in matcher.get_opcodes():
        if tag != "equal":
            return int(now[start_now][0] if start_now < end_now else before[start_before][0])
    return None


def _first_changed(before: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    return next(
        (name for name in sorted({*before, *now}) if before.get(name) != now.get(name)), None
    )


def _input_words(name: str) -> str:
    return f"file {name[len(FILE_PREFIX) :]}" if name.startswith(FILE_PREFIX) else f"input {name}"


def _producer(before: Mapping[str, Any], now: Mapping[str, Any], name: str) -> str:
    return str((now["inputs"].get(name) or before["inputs"][name])["from"])


# -- what a run would do now -------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    step: str
    #: the result a run would reuse; None if the step would run
    hit: CacheHit | None
    #: why it would run
    reason: str | None


def forecast(
    bundle: Bundle,
    metadata: MetadataStore,
    store: ArtifactStore,
    parameters: Mapping[str, Any],
) -> list[Forecast]:
    """Which steps a run would take from the cache now, and why the others would run.

    Nothing runs and nothing is recorded. A step's inputs are known only from
    the results its upstream steps would reuse: after a step that would run,
    what it will make cannot be told.
    """
    hits: dict[str, CacheHit] = {}
    running: list[str] = []
    said = []
    for step, spec in bundle.steps.items():
        after = _first(running, [*spec.inputs.values(), *spec.files])
        if spec.no_cache or after is not None:
            reason = NO_CACHE if spec.no_cache else f"runs after {after} (which re-runs)"
            said.append(Forecast(step, None, reason))
            running.append(step)
            continue
        left = {
            producer: hits[producer].outputs
            for producer in upstream(bundle.steps, step)
            if producer in hits
        }
        parts = step_parts(bundle, step, parameters, gather_inputs(bundle, step, left))
        found = find_hit(metadata, store, cache_key(parts), other_than=None)
        if found.hit is not None:
            hits[step] = found.hit
            said.append(Forecast(step, found.hit, None))
            continue
        said.append(
            Forecast(
                step,
                None,
                why_it_runs(metadata, bundle.pipeline, step, parts, found.gone, other_than=None),
            )
        )
        running.append(step)
    return said


def _first(steps: Sequence[str], among: Iterable[str]) -> str | None:
    """The first of ``steps`` that is ``among`` the others."""
    wanted = set(among)
    return next((step for step in steps if step in wanted), None)

"""A pipeline as a *bundle*: one small notebook per step, the files beside the notebook, a manifest.

Every orchestrator runs the same bundle, so it holds everything a step needs
and nothing about a particular run: a step's notebook is the setup cells, the
``parameters`` cell (where papermill injects the run's parameters and the
step's context), a cell loading the step's inputs, the step's own cells and a
cell saving its outputs. The bundle is content-addressed: its hash covers
the manifest, every step notebook and every source file, so an unchanged
notebook gives the same bundle, stored once.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .. import __version__
from ..errors import StackmagicError
from . import file_edges
from .sources import SourceFiles, collect_sources
from .spec import PARAMETERS_TAG, PipelineSpec, Step

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
STEPS_DIR = "steps"
SOURCES_DIR = "sources"
#: The variable papermill injects into every step: which run, where inputs are, where outputs go.
CONTEXT_VARIABLE = "stackmagic_context"
#: The role of a step notebook's setup cells (``metadata.stackmagic.role``), beside their number.
SETUP_ROLE = "setup"
#: Step settings that change neither what a step computes nor where: left out of its cache key.
_NOT_IN_CACHE_KEY = ("name", "after", "no_cache", "retries")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
#: The nbformat version step notebooks are written in (what ``nbformat.v4.new_notebook`` makes).
NBFORMAT = (4, 5)


@dataclass(frozen=True)
class BundleStep:
    """A step as the manifest describes it: what runtimes and orchestrators need to know."""

    name: str
    notebook: str
    inputs: dict[str, str]
    outputs: list[str]
    results: list[str]
    parameters: list[str]
    upstream: list[str]
    settings: dict[str, Any]
    source_hash: str
    #: Inputs it may change in place and passes on (an unchanged one by reference).
    changes: list[str] = field(default_factory=list)
    #: Inputs it is not seen to change: checked after it runs, so an unseen change is not silent.
    watched: list[str] = field(default_factory=list)
    #: Import statements of earlier steps whose names it uses.
    imports: list[str] = field(default_factory=list)
    #: Functions earlier steps define that it uses, by name: their ``def`` runs again in it.
    definitions: dict[str, str] = field(default_factory=dict)
    #: It reads files its code does not name: every file beside the notebook matters to it.
    reads_unnamed_files: bool = False
    #: Files earlier steps write that it names, by the step that writes them last before it.
    files: dict[str, list[str]] = field(default_factory=dict)

    @property
    def no_cache(self) -> bool:
        return bool(self.settings.get("no_cache"))

    def cache_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k not in _NOT_IN_CACHE_KEY}


def _check_names(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse a manifest whose pipeline or step names could not name a folder of the stores.

    Runs are recorded and kept under these names: a hand-edited ``../../x`` is
    refused here, before anything is recorded, not half way through a run.
    """
    names = [("pipeline", manifest.get("pipeline"))]
    if isinstance(steps := manifest.get("steps"), list):
        names += [("step", step.get("name")) for step in steps if isinstance(step, dict)]
    for kind, name in names:
        if not (
            isinstance(name, str)
            and 0 < len(name) <= 191
            and all(c.isalnum() or c in "-_" for c in name)
        ):
            raise StackmagicError(
                f"the bundle in {directory} names a {kind} {name!r}, which is no {kind} name "
                "(letters, digits, - and _ only); export it again from its notebook "
                "(`stackmagic pipeline export NOTEBOOK --to bundle -o DIR`)"
            )


@dataclass(frozen=True)
class Bundle:
    """An exported pipeline in a folder (``manifest.json``, ``steps/``, ``sources/``)."""

    directory: Path
    manifest: dict[str, Any]

    @property
    def hash(self) -> str:
        return str(self.manifest["hash"])

    @property
    def pipeline(self) -> str:
        return str(self.manifest["pipeline"])

    @property
    def parameters(self) -> dict[str, Any]:
        """The defaults known from the parameters cell's text."""
        return dict(self.manifest["parameters"])

    @property
    def parameter_names(self) -> list[str]:
        """Every name the parameters cell binds: what a run may override."""
        return list(self.manifest["parameter_names"])

    @property
    def steps(self) -> dict[str, BundleStep]:
        return {step["name"]: BundleStep(**step) for step in self.manifest["steps"]}

    @property
    def sources(self) -> Path:
        return self.directory / SOURCES_DIR

    def step_notebook(self, step: str) -> Path:
        return self.directory / self.steps[step].notebook

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        try:
            manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise StackmagicError(
                f"{directory} is not a stackmagic bundle ({error}); export one with "
                "`stackmagic pipeline export NOTEBOOK --to bundle -o DIR`"
            ) from None
        if manifest.get("format") != BUNDLE_FORMAT:
            raise StackmagicError(
                f"the bundle in {directory} has format {manifest.get('format')!r}, which this "
                "stackmagic does not run; export it again with this version"
            )
        _check_names(directory, manifest)
        return cls(directory, manifest)

    def archive(self) -> bytes:
        """The bundle as a zip with fixed timestamps: same content, same bytes."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(self.directory.rglob("*")):
                name = path.relative_to(self.directory).as_posix()
                if path.is_dir():  # kept even when empty: steps run in sources/
                    archive.writestr(zipfile.ZipInfo(name + "/", _ZIP_TIME), b"")
                    continue
                info = zipfile.ZipInfo(name, _ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (path.stat().st_mode & 0o777) << 16
                archive.writestr(info, path.read_bytes())
        return buffer.getvalue()

    @classmethod
    def unpack(cls, archive: bytes, directory: Path) -> Bundle:
        """The bundle :meth:`archive` made, written out into ``directory``."""
        try:
            opened = zipfile.ZipFile(io.BytesIO(archive))
        except zipfile.BadZipFile:
            raise StackmagicError(
                "that bundle is not a zip file; give a folder or zip from "
                "`stackmagic pipeline export`, or a bundle's URI in the artifact store"
            ) from None
        with opened:
            for member in opened.infolist():
                parts = PurePosixPath(member.filename).parts
                if PurePosixPath(member.filename).is_absolute() or ".." in parts:
                    raise StackmagicError(f"the bundle holds an unsafe path {member.filename!r}")
                target = directory / member.filename
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(opened.read(member))
                if member.external_attr >> 16:
                    target.chmod((member.external_attr >> 16) & 0o777)
        (directory / SOURCES_DIR).mkdir(exist_ok=True)  # zips of an empty folder may omit it
        return cls.load(directory)


def export_bundle(
    spec: PipelineSpec,
    destination: Path,
    *,
    exclude: Iterable[Path] = (),
    written: Mapping[str, Collection[str]] | None = None,
) -> Bundle:
    """Write ``spec`` as a bundle into ``destination`` (an empty or missing folder).

    ``written``: the files earlier runs' steps wrote (see ``collect_sources``).
    """
    if destination.exists() and any(destination.iterdir()):
        raise StackmagicError(f"{destination} is not empty; give a new folder for the bundle")
    sources = collect_sources(
        spec.notebook.parent, exclude=[*exclude, destination], written=written
    )
    for folder in (STEPS_DIR, SOURCES_DIR):
        (destination / folder).mkdir(parents=True, exist_ok=True)
    sources.copy_to(destination / SOURCES_DIR)

    digest = hashlib.sha256()
    steps = []
    for name in spec.order():
        step = spec.steps[name]
        relative = f"{STEPS_DIR}/{name}.ipynb"
        text = _step_notebook(spec, step)
        (destination / relative).write_text(text, encoding="utf-8")
        digest.update(text.encode())
        steps.append(_manifest_step(spec, step, relative))

    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "stackmagic": __version__,
        "pipeline": spec.name,
        "notebook": spec.notebook.name,
        "kernel": spec.kernel_name,
        "parameters": spec.parameters,
        "parameter_names": spec.parameter_names,
        "parameters_hash": hashlib.sha256(spec.parameters_source.encode()).hexdigest(),
        "setup_parameters": spec.setup_parameters,
        "sources": {"digest": sources.digest, "files": sources.files, "left_out": sources.left_out},
        "data_files": data_files(spec, sources),
        "steps": steps,
        "warnings": [*spec.warnings, *sources.warnings],
    }
    digest.update(json.dumps(manifest, sort_keys=True).encode())
    manifest["hash"] = digest.hexdigest()
    (destination / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Bundle(destination, manifest)


def data_files(spec: PipelineSpec, sources: SourceFiles) -> dict[str, list[str]]:
    """Files some step names and neither the setup nor a module beside the notebook does,
    by the steps that name them.

    Such a file matters to those steps only: a change to it re-runs them and what follows
    them. Every other file matters to every step, and so does every file to a step that reads
    files it does not name (a path built at run time, a folder listed); if the setup or a
    module beside the notebook does, every file matters to every step.
    """
    everyone = _module_mentions(sources)
    if spec.setup_mentions is None or everyone is None:
        return {}
    everyone += spec.setup_mentions
    named: dict[str, list[str]] = {}
    for path in [*sources.files, *sources.left_out]:
        if any(file_edges.same_file(text, path) for text in everyone):
            continue
        readers = [
            name
            for name, step in spec.steps.items()
            if any(file_edges.same_file(text, path) for text in step.mentions or ())
        ]
        if readers:
            named[path] = readers
    return named


def _module_mentions(sources: SourceFiles) -> list[str] | None:
    """What the Python modules beside the notebook name as paths; None: paths they build."""
    mentions: list[str] = []
    for path in sources.files:
        if not path.endswith(".py"):
            continue
        text = (sources.root / path).read_text(encoding="utf-8", errors="replace")
        if file_edges.reads_unnamed_files(text, {}):
            return None
        mentions += file_edges.mentioned_paths(text, file_edges.constants([text]))
    return mentions


def _manifest_step(spec: PipelineSpec, step: Step, notebook: str) -> dict[str, Any]:
    return {
        "name": step.name,
        "notebook": notebook,
        "inputs": step.inputs,
        "outputs": step.outputs,
        "results": step.results,
        "parameters": step.parameters,
        "upstream": step.upstream,
        "changes": step.changes,
        "watched": step.watched,
        "definitions": step.definitions,
        "reads_unnamed_files": step.mentions is None,
        "files": step.files,
        "imports": step.imports,
        "settings": {
            k: list(v) if isinstance(v, tuple) else v for k, v in vars(step.settings).items()
        },
        "source_hash": spec.source_hash(step.name),
    }


def _step_notebook(spec: PipelineSpec, step: Step) -> str:
    """The step's notebook, in the bytes ``nbformat.writes`` gives for it, written with json.

    nbformat validates every notebook it writes, and its JSON-schema library takes longer
    to load than it takes to find a whole run in the cache; the bundle's hash covers these
    bytes, so nbformat's layout is kept exactly: sorted keys, one-space indent, text as is.
    """
    cells = [
        _cell(
            "markdown",
            f"Step **{step.name}** of the pipeline **{spec.name}** ({spec.notebook.name}): "
            "the setup cells, the parameters, the step's inputs, its cells, and its outputs.",
            {"stackmagic": {"role": "title"}},
        )
    ]
    setup = [
        _cell("code", source, {"stackmagic": {"cell": index + 1, "role": SETUP_ROLE}})
        for index, source in spec.setup_cells
    ]
    parameters = _cell(
        "code",
        f"{spec.parameters_source.rstrip()}\n{CONTEXT_VARIABLE} = {{}}  # set by stackmagic for each run".lstrip(),
        {"tags": [PARAMETERS_TAG], "stackmagic": {"role": "parameters"}},
    )
    setup.insert(spec.parameters_position, parameters)
    cells += setup
    if step.imports:
        cells.append(
            _cell(
                "code",
                "# What earlier steps imported and this step uses: imported again, not passed\n"
                + "\n".join(step.imports),
                {"stackmagic": {"role": "imports"}},
            )
        )
    loads = "".join(
        f"\n{name} = _stackmagic_io.load_input({CONTEXT_VARIABLE}, {name!r})"
        for name in step.inputs
    )
    cells.append(
        _cell(
            "code",
            "# The inputs of this step, from the artifact store; files it writes are noted\n"
            f"from stackmagic import step_io as _stackmagic_io\n_stackmagic_io.watch_files(){loads}",
            {"stackmagic": {"role": "inputs"}},
        )
    )
    if step.definitions:
        cells.append(
            _cell(
                "code",
                "# Functions earlier steps define and this step uses: defined again here\n\n"
                + "\n\n".join(step.definitions.values()),
                {"stackmagic": {"role": "definitions"}},
            )
        )
    cells += [
        _cell("code", body, {"stackmagic": {"cell": index + 1}})
        for index, body in zip(step.cells, step.sources)
    ]
    extras = "".join(
        f", {keyword}={names!r}"
        for keyword, names in (("results", step.results), ("watched", step.watched))
        if names
    )
    cells.append(
        _cell(
            "code",
            "# The outputs of this step, to the artifact store\n"
            "from stackmagic import step_io as _stackmagic_io\n"
            f"_stackmagic_io.save_outputs({CONTEXT_VARIABLE}, globals(), {step.outputs!r}{extras})",
            {"stackmagic": {"role": "outputs"}},
        )
    )
    for number, cell in enumerate(cells):  # stable ids: the same step gives the same bytes
        cell["id"] = f"{step.name}-{number}"
    notebook = {
        "nbformat": NBFORMAT[0],
        "nbformat_minor": NBFORMAT[1],
        "metadata": {
            "kernelspec": {
                "name": spec.kernel_name,
                "display_name": spec.kernel_name,
                "language": "python",
            },
            "stackmagic": {
                "pipeline": spec.name,
                "step": step.name,
                "notebook": spec.notebook.name,
            },
        },
        "cells": cells,
    }
    return json.dumps(
        notebook, sort_keys=True, indent=1, separators=(",", ": "), ensure_ascii=False
    )


def _cell(kind: str, source: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """A cell as nbformat 4 writes it: its source split into lines, each keeping its end."""
    cell: dict[str, Any] = {
        "cell_type": kind,
        "metadata": metadata,
        "source": source.splitlines(True),
    }
    if kind == "code":
        cell |= {"execution_count": None, "outputs": []}
    return cell


def failed_cell(notebook: Any) -> str:
    """Where an executed step notebook failed, in the user's words: "cell 5 of demo.ipynb"."""
    source = notebook.get("metadata", {}).get("stackmagic", {}).get("notebook", "the notebook")
    for cell in notebook.get("cells", []):
        if not any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            continue
        meta = cell.get("metadata", {}).get("stackmagic", {})
        if "cell" in meta:
            return f"cell {meta['cell']} of {source}"
        return {
            "imports": "importing what earlier steps imported",
            "definitions": "defining what earlier steps defined",
            "inputs": "loading its inputs",
            "outputs": "saving its outputs",
            "parameters": "the parameters cell",
        }.get(meta.get("role"), "its notebook")
    return "its notebook"


__all__ = ["Bundle", "BundleStep", "CONTEXT_VARIABLE", "failed_cell", "export_bundle"]

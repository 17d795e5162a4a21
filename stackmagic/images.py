"""Dockerfiles for step images: what a notebook's steps import, pinned from this environment.

Steps on a cluster run in an image that must already hold everything they
import: stackmagic never installs packages when a step starts. The Dockerfile
pins each imported distribution at the version installed here, where the
notebook was shown to work, and stackmagic with the extras of the stack's components
(its stores' drivers; kfp, whose executor starts each Kubeflow task).
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Iterable
from pathlib import Path

from . import __version__
from .notebook.spec import PipelineSpec

#: Modules that look third-party but come with stackmagic or the kernel anyway.
_PROVIDED = {"stackmagic", "IPython", "ipykernel", "papermill", "nbformat"}


def imported_modules(sources: Iterable[str]) -> set[str]:
    """Top-level names of the absolute imports in some cells (magics and shell lines skipped)."""
    found: set[str] = set()
    for source in sources:
        code = "\n".join(
            "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
        )
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def requirements(spec: PipelineSpec) -> tuple[list[str], list[str]]:
    """Pinned distributions for the notebook's third-party imports, and imports not installed here."""
    sources = [*spec.setup, *(text for step in spec.steps.values() for text in step.sources)]
    local = {path.stem for path in spec.notebook.parent.glob("*.py")} | {
        path.name for path in spec.notebook.parent.iterdir() if (path / "__init__.py").exists()
    }
    modules = imported_modules(sources) - set(sys.stdlib_module_names) - local - _PROVIDED
    distributions = importlib.metadata.packages_distributions()
    pinned, missing = set(), []
    for module in sorted(modules):
        names = distributions.get(module)
        if not names:
            missing.append(module)
            continue
        for name in names:
            pinned.add(f"{name}=={importlib.metadata.version(name)}")
    return sorted(pinned, key=str.lower), missing


def dockerfile(spec: PipelineSpec, *, extras: Iterable[str], base: str | None = None) -> str:
    """The Dockerfile's text."""
    base = base or f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    pinned, missing = requirements(spec)
    extra = ",".join(sorted(set(extras)))
    packages = [f"stackmagic{f'[{extra}]' if extra else ''}=={__version__}", *pinned]
    lines = [
        f"# A step image for the pipeline {spec.name} ({spec.notebook.name}), written by",
        "# `stackmagic image dockerfile`: the packages its steps import, at the versions installed",
        "# where it was written. Build and push it, then give it to the orchestrator (--image).",
        *(
            f"# not installed where this was written, so not included: {module}"
            for module in missing
        ),
        f"FROM {base}",
        "RUN pip install --no-cache-dir \\",
        *(
            f"    {_quoted(package)}" + (" \\" if n < len(packages) - 1 else "")
            for n, package in enumerate(packages)
        ),
        "WORKDIR /home/stackmagic",
        "",
    ]
    return "\n".join(lines)


def _quoted(requirement: str) -> str:
    return f'"{requirement}"' if "[" in requirement else requirement


def write(path: Path, text: str, *, force: bool) -> None:
    from .errors import StackmagicError

    if path.exists() and not force:
        raise StackmagicError(f"{path} exists; give another -o PATH, or --force to replace it")
    path.write_text(text, encoding="utf-8")

"""Images: a Dockerfile for the steps that run elsewhere."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..output import Message, Output
from ..registry import Registry
from .pipelines import notebook_path


def image_dockerfile(args: argparse.Namespace) -> Output:
    from .. import images
    from ..notebook.spec import load_pipeline
    from ..open_stack import stack_components

    spec = load_pipeline(notebook_path(args.notebook, args.command_words))
    extras = [getattr(c.config, "extra", "") for c in stack_components(Registry.open(), args.stack)]
    text = images.dockerfile(spec, extras=[e for e in extras if e], base=args.base)
    if args.output == "-":
        return Message(text.rstrip("\n"), {"dockerfile": text})
    path = Path(args.output).expanduser().resolve()
    images.write(path, text, force=args.force)
    return Message(
        f"Wrote {path}: build it with `docker build -t IMAGE -f {path.name} .`, push it, and give "
        f"it to the orchestrator (`stackmagic orchestrator update NAME --image=IMAGE`)",
        {"path": str(path), "dockerfile": text},
    )

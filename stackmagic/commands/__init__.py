"""What each command does: called alike by the terminal, the magics and the widgets.

Handlers take the parsed arguments and return an :class:`~stackmagic.output.Output`;
they raise :class:`~stackmagic.errors.StackmagicError` for anything the user
can fix, after which nothing has changed on disk. One module per noun.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..output import Message, Output
from ..registry import Registry
from .components import (
    component_delete,
    component_describe,
    component_flavors,
    component_list,
    component_register,
    component_update,
)
from .gc import garbage_collect, parse_cutoff, parse_keep_last
from .images import image_dockerfile
from .pipelines import (
    pipeline_export,
    pipeline_load,
    pipeline_logs,
    pipeline_run,
    pipeline_show,
)
from .runs import RUN_STATUSES, pipeline_compare, pipeline_describe, pipeline_runs
from .stacks import (
    stack_delete,
    stack_describe,
    stack_get,
    stack_list,
    stack_register,
    stack_set,
    stack_update,
    stacks_table,
)


def init(args: argparse.Namespace) -> Output:
    registry, created = Registry.init(Path.cwd())
    verb = "Initialized" if created else "Already initialized:"
    return Message(
        f"{verb} stackmagic in {registry.directory}",
        {"directory": str(registry.directory), "created": created},
    )


__all__ = [
    "RUN_STATUSES",
    "component_delete",
    "component_describe",
    "component_flavors",
    "component_list",
    "component_register",
    "component_update",
    "garbage_collect",
    "image_dockerfile",
    "init",
    "parse_cutoff",
    "parse_keep_last",
    "pipeline_compare",
    "pipeline_describe",
    "pipeline_export",
    "pipeline_load",
    "pipeline_logs",
    "pipeline_run",
    "pipeline_runs",
    "pipeline_show",
    "stack_delete",
    "stack_describe",
    "stack_get",
    "stack_list",
    "stack_register",
    "stack_set",
    "stack_update",
    "stacks_table",
]

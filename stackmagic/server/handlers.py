"""The REST API's routes, under ``/stackmagic/api/``: one module of handlers per noun."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_server.utils import url_path_join

from ..component_type import ComponentType
from .compare import CompareHandler
from .pipelines import PipelineHandler
from .previews import OutputPreviewHandler
from .runs import CancelHandler, RunHandler, RunsHandler, StepNotebookHandler
from .stacks import (
    ActiveStackHandler,
    ComponentHandler,
    ComponentsHandler,
    FlavorsHandler,
    StackHandler,
    StacksHandler,
)

_TYPES = "|".join(kind.value for kind in ComponentType)
_NAME = r"[^/]+"


def routes(base_url: str, root_dir: str) -> list[tuple[str, type, dict[str, Any]]]:
    api = url_path_join(base_url, "stackmagic", "api")
    root = {"root": Path(root_dir).expanduser().resolve()}
    return [
        (url_path_join(api, "stacks"), StacksHandler, root),
        (url_path_join(api, "active-stack"), ActiveStackHandler, root),
        (url_path_join(api, "stacks", f"(?P<name>{_NAME})"), StackHandler, root),
        (url_path_join(api, "components", f"(?P<kind>{_TYPES})"), ComponentsHandler, root),
        (
            url_path_join(api, "components", f"(?P<kind>{_TYPES})", f"(?P<name>{_NAME})"),
            ComponentHandler,
            root,
        ),
        (url_path_join(api, "flavors"), FlavorsHandler, root),
        (url_path_join(api, "pipeline"), PipelineHandler, root),
        (url_path_join(api, "runs"), RunsHandler, root),
        (url_path_join(api, "runs", f"(?P<run_id>{_NAME})"), RunHandler, root),
        (url_path_join(api, "runs", f"(?P<run_id>{_NAME})", "cancel"), CancelHandler, root),
        (
            url_path_join(
                api, "runs", f"(?P<run_id>{_NAME})", "steps", f"(?P<step>{_NAME})", "notebook"
            ),
            StepNotebookHandler,
            root,
        ),
        (
            url_path_join(
                api,
                "runs",
                f"(?P<run_id>{_NAME})",
                "steps",
                f"(?P<step>{_NAME})",
                "outputs",
                "(?P<name>.+)",  # a file output may be in a folder: file:plots/loss.png
                "preview",
            ),
            OutputPreviewHandler,
            root,
        ),
        (url_path_join(api, "compare"), CompareHandler, root),
    ]

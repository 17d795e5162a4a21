"""Experiment tracker flavors: where each run is mirrored, for teams that compare runs there.

The options are declared here, light to import; the client that mirrors runs is
in ``stackmagic.trackers``, imported when a run is recorded (its SDK is an extra).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import traitlets as t

from ..errors import StackmagicError
from .base import ExperimentTrackerConfig

_WEB = ("http", "https")


class MLflowTracker(ExperimentTrackerConfig):
    """Mirrors each run to MLflow: a parent run per pipeline run, a nested run per step."""

    flavor = "mlflow"
    module, sdk, extra = "stackmagic.trackers.mlflow", "mlflow", "mlflow"

    tracking_uri = t.Unicode(
        help="The MLflow tracking server, http(s)://HOST:PORT; a local folder or "
        "sqlite:/// file keeps runs on this machine only."
    ).tag(required=True)
    experiment = t.Unicode(help="The MLflow experiment runs go to; default: the pipeline's name.")
    token = t.Unicode(help="Bearer token for the tracking server.").tag(secret=True)
    username = t.Unicode(help="User name, for a server with basic authentication.")
    password = t.Unicode(help="Password, for a server with basic authentication.").tag(secret=True)
    timeout = t.Float(
        30.0, help="Seconds to wait for the tracking server before the run is left unmirrored."
    )

    @property
    def is_remote(self) -> bool:  # type: ignore[override]
        return urlparse(self.tracking_uri).scheme in (*_WEB, "databricks")

    @t.validate("timeout")
    def _check_timeout(self, proposal: dict[str, Any]) -> float:
        if not 1 <= proposal["value"] <= 600:
            raise t.TraitError("expects from 1 to 600 seconds")
        return float(proposal["value"])

    def check(self) -> None:
        super().check()
        if self.password and not self.username:
            raise StackmagicError("--password needs --username (basic authentication)")
        if self.token and self.username:
            raise StackmagicError("give --token or --username/--password, not both")


class WandbTracker(ExperimentTrackerConfig):
    """Mirrors each run to Weights & Biases: one W&B run per pipeline run, in a group."""

    flavor = "wandb"
    module, sdk, extra = "stackmagic.trackers.wandb", "wandb", "wandb"

    project = t.Unicode(help="The W&B project runs go to; default: the pipeline's name.")
    entity = t.Unicode(help="The W&B team or user; default: the API key's default entity.")
    api_key = t.Unicode(help="W&B API key (not needed offline).").tag(secret=True)
    base_url = t.Unicode(
        "https://api.wandb.ai", help="The W&B server: a self-hosted one's address, say."
    )
    mode = t.Enum(
        ["online", "offline"],
        "online",
        help="offline: runs are written to --directory, for `wandb sync` later.",
    )
    directory = t.Unicode(
        help="Folder W&B writes its run files in (offline runs stay there); default: W&B's own "
        "(./wandb)."
    ).tag(local_path=True)
    group = t.Unicode(help="The W&B group of the runs; default: the pipeline's name.")

    @property
    def is_remote(self) -> bool:  # type: ignore[override]
        return self.mode == "online"

    def local_paths(self) -> list[Path]:
        """W&B's run files (``wandb/`` in --directory, or in the working directory, where
        offline runs and a notebook's own W&B runs go): they change with every run, so
        they are never part of a bundle."""
        return [Path(self.directory or os.getcwd()) / "wandb"]

    def check(self) -> None:
        super().check()
        if urlparse(self.base_url).scheme not in _WEB:
            raise StackmagicError(
                f"--base-url must be an http(s):// address, not {self.base_url!r}"
            )

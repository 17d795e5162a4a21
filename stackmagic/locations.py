"""Where stackmagic keeps things on disk.

A project's registry is the nearest ``.stackmagic/`` folder found by walking up
from the working directory, like git finds ``.git/``. Without one, a per-user
registry is used. Secrets always live in the per-user folder, never in a
project a user might commit.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR_NAME = ".stackmagic"
HOME_ENV = "STACKMAGIC_HOME"


def user_home() -> Path:
    """The per-user folder: ``$STACKMAGIC_HOME``, else the platform's user data dir."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("stackmagic", appauthor=False))


def find_project_dir(start: Path | None = None) -> Path | None:
    """The nearest ``.stackmagic/`` at or above ``start``, if any."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_DIR_NAME
        if candidate.is_dir():
            return candidate
    return None


def user_registry_dir() -> Path:
    """The registry used where no project has been initialised."""
    return user_home() / "registry"

"""Processes in Linux namespaces of their own (util-linux's ``unshare``), for tests that need a
PID or mount namespace: made as an unprivileged user where the kernel allows it."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def unshare(*namespaces: str, what: str) -> list[str]:
    """The command prefix that runs a process in new ``namespaces``; skips where none can be made."""
    command = [shutil.which("unshare") or "unshare", "--user", "--map-root-user", *namespaces]
    try:
        probe = subprocess.run([*command, "true"], capture_output=True, text=True, timeout=30)
    except OSError as error:
        pytest.skip(f"no {what} can be made here (util-linux's unshare: {error})")
    if probe.returncode != 0:
        pytest.skip(f"no {what} can be made here ({probe.stderr.strip()})")
    return command

"""stackmagic: MLOps stacks in Jupyter.

``%load_ext stackmagic`` registers the magics; it imports nothing heavy, so
loading the extension costs a few milliseconds (see ``benchmarks/load_time.py``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the built lab extension lies, for ``jupyter labextension develop``."""
    return [{"src": "labextension", "dest": "stackmagic"}]


def load_ipython_extension(ipython: Any) -> None:
    from .magics import register_magics

    register_magics(ipython)


def run(notebook: Any, **options: Any) -> Any:
    """Run a saved notebook as a pipeline: see :func:`stackmagic.pipelines.run`."""
    from .pipelines import run as run_pipeline

    return run_pipeline(notebook, **options)


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record a metric of the step run this code runs in (accuracy, loss...); ``step`` orders
    a series of values (an epoch), as experiment trackers plot them."""
    from .step_io import log_metric as log

    log(name, value, step)

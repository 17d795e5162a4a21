"""stackmagic: MLOps stacks in Jupyter.

``%load_ext stackmagic`` registers the magics; it imports nothing heavy, so
loading the extension costs a few milliseconds (see ``benchmarks/load_time.py``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    from .magics import register_magics

    register_magics(ipython)

"""The ``stackmagic`` papermill engine: nbclient on a kernel from a :class:`KernelPool`.

papermill loads this module through the ``papermill.engine`` entry point;
stackmagic itself never imports it (papermill would then import it again,
half-initialised, while loading its entry points).
"""

from __future__ import annotations

from typing import Any

from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

from .kernels import KernelPool


class PrestartedKernelEngine(NBClientEngine):
    """papermill's nbclient engine, taking its kernel from a :class:`KernelPool` when given one.

    Registered under the ``papermill.engine`` entry point as ``stackmagic``:
    ``papermill.execute_notebook(..., engine_name="stackmagic", kernel_pool=pool)``.
    """

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: int | None = None,
        kernel_pool: KernelPool | None = None,
        **kwargs: Any,
    ) -> Any:
        common = {"log_output": log_output, "stdout_file": stdout_file, "stderr_file": stderr_file}
        if kernel_pool is None:
            return super().execute_managed_notebook(
                nb_man,
                kernel_name,
                start_timeout=start_timeout,
                execution_timeout=execution_timeout,
                **common,
                **kwargs,
            )
        manager = kernel_pool.take()
        options = remove_args(["input_path", "timeout", "startup_timeout", "cwd"], **kwargs)
        client = PapermillNotebookClient(
            nb_man,
            km=manager,
            **merge_kwargs(
                options,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                **common,
            ),
        )
        try:
            return client.execute()
        finally:
            if client.kc is not None:
                client.kc.stop_channels()
            kernel_pool.retire(manager)

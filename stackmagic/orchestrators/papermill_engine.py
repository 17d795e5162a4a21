"""The ``stackmagic`` papermill engine: nbclient on a kernel from a :class:`KernelPool`,
a fresh one or a fork of the run's template (see ``warm``).

papermill loads this module through the ``papermill.engine`` entry point;
stackmagic itself never imports it (papermill would then import it again,
half-initialised, while loading its entry points).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nbformat.v4 import output_from_msg
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

from ..errors import StackmagicError
from .kernels import KernelPool
from .warm import SetupRecord, setup_cells, setup_record


class _ForkedStepClient(PapermillNotebookClient):
    """Runs a step notebook on a kernel forked from the run's template.

    The setup cells ran in the template: they get the outputs, execution
    counts and times they had there. Before the step's own cells, the kernel
    is told the step's variables, quietly, as the injected parameters cell did.
    """

    def __init__(
        self, nb_man: Any, setup: SetupRecord, step_variables: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(nb_man, **kwargs)
        self.recorded = dict(zip(map(id, setup_cells(self.nb.cells)), setup.cells))
        self.step_variables = step_variables

    def papermill_execute_cells(self) -> None:
        super().papermill_execute_cells()
        for cell in self.nb.cells:  # papermill timed them just now: the template's times
            if id(cell) in self.recorded:
                self._times_as_recorded(cell, self.recorded[id(cell)])

    def execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        record = self.recorded.get(id(cell))
        if record is not None:
            self._as_recorded(cell, cell_index, record)
            return cell
        if cell.cell_type == "code" and self.step_variables:
            self._tell(self.step_variables)
            self.step_variables = {}
        return super().execute_cell(cell, cell_index, *args, **kwargs)

    def _as_recorded(self, cell: Any, cell_index: int, record: dict[str, Any]) -> None:
        """The cell as the template ran it; displays it made with an id (``display(...,
        display_id=True)``) are known to nbclient, so the step's updates reach them."""
        cell.outputs = []
        for message in record["outputs"]:
            display_id = message["content"].get("transient", {}).get("display_id")
            if display_id:
                shown_in = self._display_id_map.setdefault(display_id, {})
                shown_in.setdefault(cell_index, []).append(len(cell.outputs))
            cell.outputs.append(output_from_msg(message))
        cell.execution_count = record["execution_count"]

    @staticmethod
    def _times_as_recorded(cell: Any, record: dict[str, Any]) -> None:
        from datetime import datetime

        times = cell.metadata.papermill
        times.start_time, times.end_time = record["started"], record["ended"]
        times.duration = (
            datetime.fromisoformat(record["ended"]) - datetime.fromisoformat(record["started"])
        ).total_seconds()

    def _tell(self, variables: Mapping[str, Any]) -> None:
        code = "\n".join(
            f"{name} = __import__('json').loads({json.dumps(value)!r})"
            for name, value in variables.items()
        )
        reply = self.wait_for_reply(self.kc.execute(code, silent=True, store_history=False))
        if reply is None or reply["content"]["status"] != "ok":
            raise StackmagicError("the step's kernel did not take its context")


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
        step_variables: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """``step_variables``: what a kernel forked from a template must be told, since it did
        not run the step's injected parameters (its context): see ``warm``."""
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
        record = setup_record(manager)
        if record is not None:
            options.update(setup=record, step_variables=dict(step_variables or {}))
        client = (PapermillNotebookClient if record is None else _ForkedStepClient)(
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

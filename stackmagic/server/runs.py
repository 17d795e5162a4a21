"""Runs: list them, start one in the background, read one and its executed notebooks."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from ..errors import NotFound, StackmagicError
from ..registry import PROJECT_START
from .base import CommandHandler, refused, word


class RunsHandler(CommandHandler):
    auth_resource = "kernels"  # starting a run executes the notebook's code

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        words = [
            "pipeline",
            "runs",
            "--limit",
            word(self.get_query_argument("limit", "20"), "limit"),
        ]
        if self.get_query_argument("pipeline", None):
            words += ["--pipeline", word(self.get_query_argument("pipeline"), "the pipeline")]
        await self.answer(words)

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        """Start a run of a saved notebook in the background; answer once it is recorded.

        The answer (202) carries the run's id: ``GET runs/ID`` follows it. A run that
        cannot start (no such notebook, an unknown parameter) is a 4xx with the reason.
        """
        data = self.body()
        notebook = (self.root / self.field(data, "notebook")).resolve()
        if not notebook.is_relative_to(self.root):
            raise refused("the notebook must be inside the server's folder")
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise refused("'parameters' must be an object")
        stack = self.field(data, "stack") if data.get("stack") is not None else None
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        _start_run(notebook, parameters, stack, self.root, started, self.log)
        try:
            run_id = await started
        except NotFound as error:
            return self._error(404, str(error))
        except StackmagicError as error:
            return self._error(400, str(error))
        except Exception as error:  # noqa: BLE001 - answered, and logged where it happened
            return self._error(500, f"the run could not start: {type(error).__name__}: {error}")
        self.set_status(202)
        self.finish(json.dumps({"id": run_id, "status": "running"}))


def _start_run(
    notebook: Path,
    parameters: dict[str, Any],
    stack: str | None,
    root: Path,
    started: asyncio.Future[str],
    log: Any,
) -> None:
    """Run the notebook in a thread; ``started`` gets its run id, or why it could not start."""
    from ..pipelines import run as run_pipeline
    from ..progress import Progress

    loop = started.get_loop()

    def tell(result: str | None = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if started.done():
                return
            if error is not None:
                started.set_exception(error)
            else:
                started.set_result(str(result))

        loop.call_soon_threadsafe(settle)

    class Started(Progress):
        def run_started(self, run_id: str, pipeline: str, steps: list[str]) -> None:
            tell(run_id)

    def work() -> None:
        token = PROJECT_START.set(root)
        try:
            if not notebook.is_file():
                raise NotFound(f"no notebook {notebook.name} in {notebook.parent}")
            run_pipeline(notebook, parameters=parameters, stack=stack, progress=Started())
        except StackmagicError as error:  # before the start: the answer; after: in the record
            tell(error=error)
        except BaseException as error:  # before the start: a 500; after: in the record and the log
            log.exception("stackmagic: the run of %s stopped", notebook)
            tell(error=error if isinstance(error, Exception) else RuntimeError(repr(error)))
        finally:
            PROJECT_START.reset(token)

    threading.Thread(target=work, name=f"stackmagic-run-{notebook.stem}", daemon=True).start()


class RunHandler(CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        await self.answer(["pipeline", "describe", word(run_id, "the run")])


class StepNotebookHandler(CommandHandler):
    """The executed notebook of a run's step, as nbformat JSON, read from the artifact store.

    The browser cannot reach a bucket (and must not hold its keys): the server reads it.
    """

    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str, step: str) -> None:
        await self.answer(
            lambda: executed_notebook(word(run_id, "the run"), word(step, "the step"))
        )


def executed_notebook(run_id: str, step: str) -> dict[str, Any]:
    """Read through the stack the run ran on, whose artifact store holds the notebook."""
    from ..pipelines import OpenStack
    from ..registry import Registry

    registry = Registry.open()
    with OpenStack.open(registry) as active:
        record = active.metadata.run(run_id)
        try:
            uri = record.step(step).notebook_uri
        except StackmagicError as error:
            raise NotFound(str(error)) from None
        if not uri:
            raise NotFound(
                f"step {step!r} of run {record.id} left no executed notebook "
                "(it was taken from the cache, or never started)"
            )
        elsewhere = record.stack_name != active.name and any(
            stack.name == record.stack_name for stack in registry.stacks()
        )
        if not elsewhere:
            return json.loads(active.artifact_store.read_bytes(uri))
    with OpenStack.open(registry, record.stack_name) as ran_on:
        return json.loads(ran_on.artifact_store.read_bytes(uri))

"""Runs: list them, start one in the background, read one and its executed notebooks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import tornado.web
from jupyter_server.auth.decorator import authorized

from ..errors import NotFound, StackmagicError
from ..parser import run
from ..registry import PROJECT_START
from .base import CommandHandler, refused, word

if TYPE_CHECKING:
    from ..stores.artifacts import ArtifactStore
    from ..stores.metadata import RunRecord, StepRecord


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
        for option in ("pipeline", "status"):
            if self.get_query_argument(option, None):
                words += [f"--{option}", word(self.get_query_argument(option), f"the {option}")]
        await self.answer(words)

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        """Start a run of a saved notebook in the background; answer once it is recorded.

        The answer (202) carries the run's id: ``GET runs/ID`` follows it. A run that
        cannot start (no such notebook, an unknown parameter or step, a notebook that does
        not parse) is a 4xx with the reason, whole, as ``pipeline run`` says it.
        """
        data = self.body()
        notebook = (self.root / self.field(data, "notebook")).resolve()
        if not notebook.is_relative_to(self.root):
            raise refused("the notebook must be inside the server's folder")
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise refused("'parameters' must be an object")
        stack = self.field(data, "stack") if data.get("stack") is not None else None
        options = run_options(data)
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        _start_run(notebook, parameters, stack, options, self.root, started, self.log)
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


def run_options(data: dict[str, Any]) -> dict[str, Any]:
    """``no_cache``, ``only`` and ``from_step`` of a request: ``pipeline run``'s options.

    ``only`` is a list of step names, as a form gives it; a run takes one (``--only STEP``).
    """
    no_cache = data.get("no_cache", False)
    if not isinstance(no_cache, bool):
        raise refused("'no_cache' must be true or false")
    only = data.get("only") or []
    if not isinstance(only, list) or not all(isinstance(step, str) and step for step in only):
        raise refused("'only' must be a list of step names")
    if len(only) > 1:
        raise refused(
            f"'only' names {len(only)} steps; a run takes one (--only STEP): use 'from_step' "
            "to run a step and those after it"
        )
    from_step = data.get("from_step")
    if from_step is not None and (not isinstance(from_step, str) or not from_step):
        raise refused("'from_step' must be a step name")
    return {"no_cache": no_cache, "only": only[0] if only else None, "from_step": from_step}


def _start_run(
    notebook: Path,
    parameters: dict[str, Any],
    stack: str | None,
    options: dict[str, Any],
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
            run_pipeline(
                notebook, parameters=parameters, stack=stack, progress=Started(), **options
            )
        except StackmagicError as error:  # before the start: the answer; after: in the record
            tell(error=error)
        except BaseException as error:  # before the start: a 500; after: in the record and the log
            log.exception("stackmagic: the run of %s stopped", notebook)
            tell(error=error if isinstance(error, Exception) else RuntimeError(repr(error)))
        finally:
            PROJECT_START.reset(token)

    threading.Thread(target=work, name=f"stackmagic-run-{notebook.stem}", daemon=True).start()


class CancelHandler(CommandHandler):
    auth_resource = "kernels"  # it stops the kernels of a run

    @tornado.web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        """``pipeline cancel ID --no-wait``: 202 once asked (or done), 409 if the run ended."""
        from ..stores.metadata.cancelling import AlreadyEnded

        words = ["pipeline", "cancel", word(run_id, "the run"), "--no-wait"]
        try:
            data = await asyncio.to_thread(self._carry_out, words)
        except AlreadyEnded as error:
            return self._error(409, str(error))
        except NotFound as error:
            return self._error(404, str(error))
        except StackmagicError as error:
            return self._error(400, str(error))
        self.set_status(202)
        self.finish(json.dumps(data))


class RunHandler(CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        """``pipeline describe``'s data, plus ``edges``: the DAG's ``[upstream, step]`` pairs."""
        words = ["pipeline", "describe", word(run_id, "the run")]

        def described() -> dict[str, Any]:
            data: dict[str, Any] = run(words)[0].data
            return {**data, "edges": pipeline_edges(data["id"])}

        await self.answer(described)


def pipeline_edges(run_id: str) -> list[list[str]]:
    """The edges of the DAG a run ran, ``[upstream, step]``, from its bundle's manifest.

    A bundle that is gone (``stackmagic gc``) or unreadable leaves the steps without edges.
    """
    try:
        return [list(edge) for edge in _bundle_edges(run_id)]
    except (StackmagicError, OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []


@functools.lru_cache(maxsize=256)
def _bundle_edges(run_id: str) -> tuple[tuple[str, str], ...]:
    """Read once per run: a run's bundle never changes (a failure is not kept, and tried again)."""
    from ..notebook.exporter import MANIFEST

    with (
        run_and_store(run_id) as (record, store),
        store.reading(record.bundle_uri) as stream,
        zipfile.ZipFile(cast(IO[bytes], stream)) as archive,
    ):
        manifest = json.loads(archive.read(MANIFEST))
    return tuple(
        (upstream, step["name"]) for step in manifest["steps"] for upstream in step["upstream"]
    )


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
    with run_and_store(run_id) as (record, store):
        uri = step_of(record, step).notebook_uri
        if not uri:
            raise NotFound(
                f"step {step!r} of run {record.id} left no executed notebook "
                "(it was taken from the cache, or never started)"
            )
        return json.loads(store.read_bytes(uri))


@contextlib.contextmanager
def run_and_store(run_id: str) -> Iterator[tuple[RunRecord, ArtifactStore]]:
    """A run's record and the artifact store of the stack it ran on, which holds its files.

    The record is in the active stack's metadata store; a run made on another stack still
    registered here is read through that stack's artifact store (the active one otherwise).
    """
    from ..open_stack import OpenStack
    from ..registry import Registry

    registry = Registry.open()
    with OpenStack.open(registry) as active:
        record = active.metadata.run(run_id)
        elsewhere = record.stack_name != active.name and any(
            stack.name == record.stack_name for stack in registry.stacks()
        )
        if not elsewhere:
            yield record, active.artifact_store
            return
    with OpenStack.open(registry, record.stack_name) as ran_on:
        yield record, ran_on.artifact_store


def step_of(record: RunRecord, step: str) -> StepRecord:
    """The step a URL names: one the run does not have is a 404."""
    try:
        return record.step(step)
    except StackmagicError as error:
        raise NotFound(str(error)) from None

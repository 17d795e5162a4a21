"""REST resources of the server extension, each carried out as words of the shared grammar.

``GET /stackmagic/api/stacks`` is ``stackmagic stack list``, ``PUT
.../stacks/active`` is ``stackmagic stack set NAME``, and so on: the server
answers what the terminal and the magics answer, with the same checks and the
same one-line errors, as JSON. Output masks secrets, so no response holds one.
Commands run in a worker thread, in the project of the server's root folder.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ..component_type import ComponentType
from ..errors import NotFound, StackmagicError, describe_os_error
from ..parser import run
from ..registry import PROJECT_START

_TYPES = "|".join(kind.value for kind in ComponentType)
_NAME = r"[^/]+"


class _CommandHandler(APIHandler):
    """Answers with the data of one command of the grammar; errors as ``{"message": ...}``."""

    def initialize(self, root: Path) -> None:
        self.root = root

    async def answer(self, words: Sequence[str] | Callable[[], Any], status: int = 200) -> None:
        try:
            data = await asyncio.to_thread(self._carry_out, words)
        except NotFound as error:
            return self._error(404, str(error))
        except StackmagicError as error:
            return self._error(400, str(error))
        except OSError as error:
            return self._error(500, describe_os_error(error))
        self.set_status(status)
        self.finish(json.dumps(data, default=str))

    def _carry_out(self, words: Sequence[str] | Callable[[], Any]) -> Any:
        token = PROJECT_START.set(self.root)
        try:
            if callable(words):
                return words()
            output, _ = run(words)
            return output.data
        finally:
            PROJECT_START.reset(token)

    def _error(self, status: int, message: str) -> None:
        self.set_status(status)
        self.finish(json.dumps({"message": message}))

    def body(self) -> dict[str, Any]:
        """The request's JSON object; a malformed one is a 400 with a message."""
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise tornado.web.HTTPError(400, reason="the request body is not JSON") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, reason="the request body must be a JSON object")
        return data

    def field(self, data: dict[str, Any], name: str) -> str:
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise tornado.web.HTTPError(400, reason=f"give {name!r}, a non-empty string")
        return value

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish(json.dumps({"message": self._reason}))


class StacksHandler(_CommandHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(["stack", "list"])

    @tornado.web.authenticated
    async def post(self) -> None:
        data = self.body()
        words = ["stack", "register", self.field(data, "name")]
        for flag, key in (("-m", "metadata_store"), ("-a", "artifact_store"),
                          ("-o", "orchestrator"), ("-s", "step_operator")):
            if data.get(key):
                words += [flag, self.field(data, key)]
        await self.answer(words, status=201)


class ActiveStackHandler(_CommandHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.answer(["stack", "get"])

    @tornado.web.authenticated
    async def put(self) -> None:
        await self.answer(["stack", "set", self.field(self.body(), "name")])


class StackHandler(_CommandHandler):
    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        await self.answer(["stack", "describe", name])

    @tornado.web.authenticated
    async def delete(self, name: str) -> None:
        await self.answer(["stack", "delete", name])


class ComponentsHandler(_CommandHandler):
    @tornado.web.authenticated
    async def get(self, kind: str) -> None:
        await self.answer([kind, "list"])

    @tornado.web.authenticated
    async def post(self, kind: str) -> None:
        data = self.body()
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise tornado.web.HTTPError(400, reason="'options' must be an object of option values")
        words = [kind, "register", self.field(data, "name"), f"--type={self.field(data, 'flavor')}"]
        for option, value in options.items():
            if value == "-":  # the terminal asks for it; a server cannot
                raise tornado.web.HTTPError(
                    400, reason=f"--{option}: give the value itself, or env:VARIABLE")
            words.append(f"--{option}={_option_text(value)}")
        await self.answer(words, status=201)


class ComponentHandler(_CommandHandler):
    @tornado.web.authenticated
    async def get(self, kind: str, name: str) -> None:
        await self.answer([kind, "describe", name])

    @tornado.web.authenticated
    async def delete(self, kind: str, name: str) -> None:
        await self.answer([kind, "delete", name])


class FlavorsHandler(_CommandHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        def every_type() -> dict[str, Any]:
            return {kind.value: run([kind.value, "flavors"])[0].data for kind in ComponentType}

        await self.answer(every_type)


class RunsHandler(_CommandHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        words = ["pipeline", "runs", "--limit", self.get_query_argument("limit", "20")]
        if self.get_query_argument("pipeline", None):
            words += ["--pipeline", self.get_query_argument("pipeline")]
        await self.answer(words)


    @tornado.web.authenticated
    async def post(self) -> None:
        """Start a run of a saved notebook in the background; answer once it is recorded.

        The answer (202) carries the run's id: ``GET runs/ID`` follows it. A run that
        cannot start (no such notebook, an unknown parameter) is a 4xx with the reason.
        """
        data = self.body()
        notebook = (self.root / self.field(data, "notebook")).resolve()
        if not notebook.is_relative_to(self.root):
            raise tornado.web.HTTPError(400, reason="the notebook must be inside the server's folder")
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise tornado.web.HTTPError(400, reason="'parameters' must be an object")
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        _start_run(notebook, parameters, data.get("stack"), self.root, started)
        try:
            run_id = await started
        except NotFound as error:
            return self._error(404, str(error))
        except StackmagicError as error:
            return self._error(400, str(error))
        self.set_status(202)
        self.finish(json.dumps({"id": run_id, "status": "running"}))


def _start_run(notebook: Path, parameters: dict[str, Any], stack: str | None, root: Path,
               started: asyncio.Future[str]) -> None:
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
            run_pipeline(notebook, parameters=parameters, stack=stack or None, progress=Started())
        except StackmagicError as error:  # before the start: the answer; after: in the record
            tell(error=error)
        except Exception as error:  # noqa: BLE001 - whatever it was, the client hears of it
            tell(error=StackmagicError(f"{type(error).__name__}: {error}"))
        finally:
            PROJECT_START.reset(token)

    threading.Thread(target=work, name=f"stackmagic-run-{notebook.stem}", daemon=True).start()


class RunHandler(_CommandHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        await self.answer(["pipeline", "describe", run_id])


def _option_text(value: Any) -> str:
    """A JSON option value as the command line types it."""
    from ..flavors.base import format_value

    return format_value(value)


def routes(base_url: str, root_dir: str) -> list[tuple[str, type, dict[str, Any]]]:
    api = url_path_join(base_url, "stackmagic", "api")
    root = {"root": Path(root_dir).expanduser().resolve()}
    return [
        (url_path_join(api, "stacks"), StacksHandler, root),
        (url_path_join(api, "stacks", "active"), ActiveStackHandler, root),
        (url_path_join(api, "stacks", f"(?P<name>{_NAME})"), StackHandler, root),
        (url_path_join(api, "components", f"(?P<kind>{_TYPES})"), ComponentsHandler, root),
        (url_path_join(api, "components", f"(?P<kind>{_TYPES})", f"(?P<name>{_NAME})"),
         ComponentHandler, root),
        (url_path_join(api, "flavors"), FlavorsHandler, root),
        (url_path_join(api, "runs"), RunsHandler, root),
        (url_path_join(api, "runs", f"(?P<run_id>{_NAME})"), RunHandler, root),
    ]

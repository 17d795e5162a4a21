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
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ..argparsing import HelpShown
from ..component_type import ComponentType
from ..errors import NotFound, StackmagicError, describe_os_error
from ..parser import run
from ..registry import PROJECT_START

_TYPES = "|".join(kind.value for kind in ComponentType)
_NAME = r"[^/]+"
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_PLAIN = (str, int, float, bool)


class _CommandHandler(APIHandler):
    """Answers with the data of one command of the grammar; errors as ``{"message": ...}``.

    Changing the project's stacks is writing its files: Jupyter's authorizer
    decides on the resource ``contents``.
    """

    auth_resource = "contents"

    def initialize(self, root: Path) -> None:
        self.root = root

    async def answer(self, words: Sequence[str] | Callable[[], Any], status: int = 200) -> None:
        try:
            data = await asyncio.to_thread(self._carry_out, words)
        except NotFound as error:  # what the URL names is missing; in a body, it is bad input
            return self._error(404 if self.request.method in ("GET", "DELETE") else 400, str(error))
        except (StackmagicError, HelpShown) as error:
            return self._error(400, str(error) or "not a command")
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
            data = json.loads(self.request.body or b"{}", parse_constant=_not_json)
        except ValueError as error:
            raise _refused(
                str(error) if isinstance(error, NotJson) else "the request body is not JSON"
            ) from None
        if not isinstance(data, dict):
            raise _refused("the request body must be a JSON object")
        return data

    def field(self, data: dict[str, Any], name: str) -> str:
        return word(data.get(name), repr(name))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        message = (getattr(error, "log_message", None) or self._reason).replace("%%", "%")
        self.finish(json.dumps({"message": message}))


class NotJson(ValueError):
    """``NaN`` or ``Infinity`` in a body: Python's parser takes them, JSON has no such thing."""


def _not_json(constant: str) -> Any:
    raise NotJson(f"the request body holds {constant}, which is not JSON; give finite numbers")


def _refused(message: str) -> tornado.web.HTTPError:
    """A 400 whose message is the answer (a reason phrase may only hold some characters)."""
    return tornado.web.HTTPError(400, message.replace("%", "%%"))


def word(value: Any, what: str) -> str:
    """A name, id or flavor for a command: text that cannot be read as an option."""
    if not isinstance(value, str) or not value:
        raise _refused(f"give {what}, a non-empty string")
    if any(character in value for character in "\0\n\r"):
        raise _refused(f"{what} {value!r} holds a NUL or line break, which no name or path has")
    if value.startswith("-"):
        raise _refused(f"{what} {value!r} cannot start with '-'")
    return value


class StacksHandler(_CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(["stack", "list"])

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        data = self.body()
        words = ["stack", "register", self.field(data, "name")]
        for flag, key in (
            ("-m", "metadata_store"),
            ("-a", "artifact_store"),
            ("-o", "orchestrator"),
            ("-s", "step_operator"),
        ):
            if data.get(key):
                words += [flag, self.field(data, key)]
        await self.answer(words, status=201)


class ActiveStackHandler(_CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(["stack", "get"])

    @tornado.web.authenticated
    @authorized
    async def put(self) -> None:
        await self.answer(["stack", "set", self.field(self.body(), "name")])


class StackHandler(_CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        await self.answer(["stack", "describe", word(name, "the stack")])

    @tornado.web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.answer(["stack", "delete", word(name, "the stack")])


class ComponentsHandler(_CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, kind: str) -> None:
        await self.answer([kind, "list"])

    @tornado.web.authenticated
    @authorized
    async def post(self, kind: str) -> None:
        data = self.body()
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise _refused("'options' must be an object of option values")
        flavor = self.field(data, "flavor")
        words = [kind, "register", self.field(data, "name"), f"--type={flavor}"]
        option_kinds = _option_kinds(ComponentType(kind), flavor)
        for option, value in options.items():
            text = _option_text(option, value, option_kinds.get(option.replace("_", "-")))
            words.append(f"--{option}={text}")
        await self.answer(words, status=201)


class ComponentHandler(_CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, kind: str, name: str) -> None:
        await self.answer([kind, "describe", word(name, "the component")])

    @tornado.web.authenticated
    @authorized
    async def delete(self, kind: str, name: str) -> None:
        await self.answer([kind, "delete", word(name, "the component")])


class FlavorsHandler(_CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        def every_type() -> dict[str, Any]:
            return {kind.value: run([kind.value, "flavors"])[0].data for kind in ComponentType}

        await self.answer(every_type)


class RunsHandler(_CommandHandler):
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
            raise _refused("the notebook must be inside the server's folder")
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise _refused("'parameters' must be an object")
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


class RunHandler(_CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        await self.answer(["pipeline", "describe", word(run_id, "the run")])


class StepNotebookHandler(_CommandHandler):
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


def _option_kinds(kind: ComponentType, flavor: str) -> dict[str, str]:
    """The kind of each option of a flavor (string, list, mapping...); none for an unknown
    flavor, which the command itself then refuses."""
    from ..flavors import get_flavor

    try:
        options = get_flavor(kind, flavor).schema()["options"]
    except StackmagicError:
        return {}
    return {option["name"]: option["kind"] for option in options}


def _option_text(option: str, value: Any, kind: str | None) -> str:
    """A JSON option value as the command line types it; what could not be typed is refused.

    Only a list option takes a list, and only a mapping option an object: any other
    option would keep one as text (``{"a": "b"}`` as ``a=b``).
    """
    from ..flavors.base import format_value

    if not _OPTION_NAME.fullmatch(option):
        raise _refused(f"{option!r} is no option name")
    shape = {"list": list, "mapping": dict}.get(kind or "")
    if isinstance(value, (dict, list)) and not (shape and isinstance(value, shape)):
        given = "an object" if isinstance(value, dict) else "a list"
        raise _refused(f"--{option}: give text, a number or a boolean, not {given}")
    items = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
    )
    if not all(isinstance(item, _PLAIN) for item in items):
        raise _refused(f"--{option}: give text, a number, a boolean, or a list or object of those")
    text = format_value(value)
    if any(character in text for character in "\0\n\r"):
        raise _refused(f"--{option}: a NUL or line break is no part of an option's value")
    if text == "-":  # the terminal asks for it; a server cannot
        raise _refused(f"--{option}: give the value itself, or env:VARIABLE")
    return text


def routes(base_url: str, root_dir: str) -> list[tuple[str, type, dict[str, Any]]]:
    api = url_path_join(base_url, "stackmagic", "api")
    root = {"root": Path(root_dir).expanduser().resolve()}
    return [
        (url_path_join(api, "stacks"), StacksHandler, root),
        (url_path_join(api, "active-stack"), ActiveStackHandler, root),
        (url_path_join(api, "stacks", f"(?P<name>{_NAME})"), StackHandler, root),
        (url_path_join(api, "components", f"(?P<kind>{_TYPES})"), ComponentsHandler, root),
        (
            url_path_join(api, "components", f"(?P<kind>{_TYPES})", f"(?P<name>{_NAME})"),
            ComponentHandler,
            root,
        ),
        (url_path_join(api, "flavors"), FlavorsHandler, root),
        (url_path_join(api, "runs"), RunsHandler, root),
        (url_path_join(api, "runs", f"(?P<run_id>{_NAME})"), RunHandler, root),
        (
            url_path_join(
                api, "runs", f"(?P<run_id>{_NAME})", "steps", f"(?P<step>{_NAME})", "notebook"
            ),
            StepNotebookHandler,
            root,
        ),
    ]

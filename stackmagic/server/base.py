"""What every REST resource shares: commands of the grammar carried out in a worker thread.

Each resource answers what the terminal and the magics answer, with the same
checks and the same one-line errors, as JSON. Output masks secrets, so no
response holds one. Commands run in the project of the server's root folder.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler

from ..argparsing import HelpShown
from ..errors import NotFound, StackmagicError, describe_os_error
from ..parser import run
from ..registry import PROJECT_START


class CommandHandler(APIHandler):
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
        except Exception as error:  # a bug: one line here, the traceback in the server's log
            self.log.exception("stackmagic: %s %s failed", self.request.method, self.request.path)
            return self._error(
                500,
                f"stackmagic could not answer ({type(error).__name__}); "
                "the Jupyter server's log has the details",
            )
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
            raise refused(
                str(error) if isinstance(error, NotJson) else "the request body is not JSON"
            ) from None
        if not isinstance(data, dict):
            raise refused("the request body must be a JSON object")
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


def refused(message: str) -> tornado.web.HTTPError:
    """A 400 whose message is the answer (a reason phrase may only hold some characters)."""
    return tornado.web.HTTPError(400, message.replace("%", "%%"))


def word(value: Any, what: str) -> str:
    """A name, id or flavor for a command: text that cannot be read as an option."""
    if not isinstance(value, str) or not value:
        raise refused(f"give {what}, a non-empty string")
    if any(character in value for character in "\0\n\r"):
        raise refused(f"{what} {value!r} holds a NUL or line break, which no name or path has")
    if value.startswith("-"):
        raise refused(f"{what} {value!r} cannot start with '-'")
    return value

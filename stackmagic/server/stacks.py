"""Stacks, components and flavors: ``GET /stackmagic/api/stacks`` is ``stackmagic stack list``,
``PUT .../active-stack`` is ``stackmagic stack set NAME``, and so on."""

from __future__ import annotations

import re
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized

from ..component_type import ComponentType
from ..errors import StackmagicError
from ..parser import run
from .base import CommandHandler, refused, word

_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_PLAIN = (str, int, float, bool)


class StacksHandler(CommandHandler):
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
            ("-e", "experiment_tracker"),
        ):
            if data.get(key):
                words += [flag, self.field(data, key)]
        await self.answer(words, status=201)


class ActiveStackHandler(CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(["stack", "get"])

    @tornado.web.authenticated
    @authorized
    async def put(self) -> None:
        await self.answer(["stack", "set", self.field(self.body(), "name")])


class StackHandler(CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        await self.answer(["stack", "describe", word(name, "the stack")])

    @tornado.web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.answer(["stack", "delete", word(name, "the stack")])


class ComponentsHandler(CommandHandler):
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
            raise refused("'options' must be an object of option values")
        flavor = self.field(data, "flavor")
        words = [kind, "register", self.field(data, "name"), f"--type={flavor}"]
        option_kinds = _option_kinds(ComponentType(kind), flavor)
        for option, value in options.items():
            text = _option_text(option, value, option_kinds.get(option.replace("_", "-")))
            words.append(f"--{option}={text}")
        await self.answer(words, status=201)


class ComponentHandler(CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, kind: str, name: str) -> None:
        await self.answer([kind, "describe", word(name, "the component")])

    @tornado.web.authenticated
    @authorized
    async def delete(self, kind: str, name: str) -> None:
        await self.answer([kind, "delete", word(name, "the component")])


class FlavorsHandler(CommandHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        def every_type() -> dict[str, Any]:
            return {kind.value: run([kind.value, "flavors"])[0].data for kind in ComponentType}

        await self.answer(every_type)


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
        raise refused(f"{option!r} is no option name")
    shape = {"list": list, "mapping": dict}.get(kind or "")
    if isinstance(value, (dict, list)) and not (shape and isinstance(value, shape)):
        given = "an object" if isinstance(value, dict) else "a list"
        raise refused(f"--{option}: give text, a number or a boolean, not {given}")
    items = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
    )
    if not all(isinstance(item, _PLAIN) for item in items):
        raise refused(f"--{option}: give text, a number, a boolean, or a list or object of those")
    text = format_value(value)
    if any(character in text for character in "\0\n\r"):
        raise refused(f"--{option}: a NUL or line break is no part of an option's value")
    if text == "-":  # the terminal asks for it; a server cannot
        raise refused(f"--{option}: give the value itself, or env:VARIABLE")
    return text

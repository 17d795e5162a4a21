"""Secret option values (passwords, keys, tokens, connection strings).

A secret given on the command line is moved into the per-user secret file
(mode 0600, outside any project) and the project's config keeps only an opaque
reference, ``secret:<id>``. A user may instead give ``env:VARIABLE``, which is
stored as is and read from the environment when the component is used.
Neither form is ever shown: output masks every secret option.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path

from .errors import StackmagicError
from .jsonfile import JsonFile
from .locations import user_home

SECRET_PREFIX = "secret:"
ENV_PREFIX = "env:"
MASK = "********"
#: Given as this (`--password=-`), a secret option is asked for, not read from the command line.
PROMPT = "-"

#: The source of the notebook cell a command was typed in; None in a terminal. A secret typed
#: there would stay in the saved notebook and in IPython's history database.
TYPED_IN_CELL: ContextVar[str | None] = ContextVar("typed_in_cell", default=None)


class SecretInCell(StackmagicError):
    """A secret's value written in the notebook cell itself; ``value`` is what to scrub."""

    def __init__(self, flag: str, value: str, command: str) -> None:
        super().__init__(
            f"{flag}: a secret typed into a notebook stays in the saved cell and in IPython's "
            f"history; nothing was stored and it was removed from this kernel's history: delete "
            f"it from the cell, then give {flag}={PROMPT} (asked for, hidden), {flag}=env:VARIABLE, "
            f"or use the form (`%{command}` with no arguments)"
        )
        self.value = value


def refuse_if_typed_in_cell(flag: str, value: str, command: str) -> None:
    """Refuse a secret whose value is written in the cell; ``{variable}`` expansion is fine."""
    cell = TYPED_IN_CELL.get()
    if cell is None or value == PROMPT or is_env_reference(value) or not value:
        return
    if re.search(re.escape(flag) + r"""(=|\s+)['"]?""" + re.escape(value), cell):
        raise SecretInCell(flag, value, command)


def is_env_reference(value: str) -> bool:
    return value.startswith(ENV_PREFIX) and len(value) > len(ENV_PREFIX)


def masked(value: str) -> str:
    """What output shows for a secret option: environment references are safe to show."""
    if not value:
        return ""
    return value if is_env_reference(value) else MASK


class SecretStore:
    """The per-user file of secret values, keyed by random ids."""

    def __init__(self, home: Path | None = None) -> None:
        home = home or user_home()
        self._file = JsonFile(home / "secrets.json", mode=0o600)

    def put(self, value: str, label: str) -> str:
        """Keep ``value`` and return the reference to store in its place."""
        if is_env_reference(value):
            return value
        self._file.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret_id = os.urandom(16).hex()
        with self._file.edit(dict) as stored:
            stored[secret_id] = {"value": value, "for": label}
        return SECRET_PREFIX + secret_id

    def discard(self, references: Iterable[str]) -> None:
        ids = [ref[len(SECRET_PREFIX) :] for ref in references if ref.startswith(SECRET_PREFIX)]
        if not ids or not self._file.path.exists():
            return
        with self._file.edit(dict) as stored:
            for secret_id in ids:
                stored.pop(secret_id, None)

    def resolve(self, reference: str, *, what: str, fix: str) -> str:
        """The real value behind a reference; ``what``/``fix`` word the error if it is missing."""
        if is_env_reference(reference):
            variable = reference[len(ENV_PREFIX) :]
            try:
                return os.environ[variable]
            except KeyError:
                raise StackmagicError(
                    f"{what} comes from the environment variable {variable}, which is not set; "
                    f"set it, or {fix}"
                ) from None
        if reference.startswith(SECRET_PREFIX):
            entry = self._file.read(dict).get(reference[len(SECRET_PREFIX) :])
            if entry is None:
                raise StackmagicError(
                    f"{what} is not stored on this machine (secrets stay with the user "
                    f"who set them); {fix}"
                )
            return str(entry["value"])
        return reference

"""A description carried as one word of a command line: base64 of its JSON.

What a cloud VM's startup script or a step operator's job runs is a command
whose last word describes the work (the run, the stores, where secrets
wait); one word survives every shell, container entrypoint and API field.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from typing import Any, ClassVar, TypeVar

from .errors import StackmagicError

_Described = TypeVar("_Described", bound="CommandWord")


class CommandWord:
    """A dataclass that encodes itself into one command-line word and back."""

    #: what it is called in the message about a damaged one ("launch description")
    called: ClassVar[str]

    def encode(self) -> str:
        fields: dict[str, Any] = asdict(self)  # type: ignore[call-overload]
        return base64.b64encode(json.dumps(fields, sort_keys=True).encode()).decode()

    @classmethod
    def decode(cls: type[_Described], text: str) -> _Described:
        try:
            return cls(**json.loads(base64.b64decode(text, validate=True)))
        except (ValueError, TypeError) as error:
            raise StackmagicError(
                f"the {cls.called} is damaged ({error}): start the run again with "
                "`stackmagic pipeline run`, which writes a new one"
            ) from None

"""The ``%%step`` line: one grammar for the cell magic and the notebook parser."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from ..argparsing import Parser
from ..errors import UsageError

STEP_MAGIC = "%%step"
#: A cell that runs in the notebook and never in the pipeline.
NOTEBOOK_ONLY_MAGIC = "%%notebook-only"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_MEMORY = re.compile(r"^\d+(\.\d+)?([KMGT]i?)?$")
#: Bounds no real machine or patience reaches, so a typo is caught here, not by a cluster.
MOST_GPUS = 64
MOST_RETRIES = 100


@dataclass(frozen=True)
class StepSettings:
    name: str
    after: tuple[str, ...] = ()
    no_cache: bool = False
    image: str = ""
    cpu: str = ""
    memory: str = ""
    gpu: int = 0
    retries: int = 0
    operator: str = ""


def _positive_number(text: str) -> str:
    try:
        if float(text) <= 0:
            raise ValueError
    except ValueError:
        raise UsageError(
            f"--cpu expects a positive number of cores, not {text!r}", "step"
        ) from None
    return text


def _memory(text: str) -> str:
    if not _MEMORY.fullmatch(text):
        raise UsageError(f"--memory expects a size such as 512M, 4G or 8Gi, not {text!r}", "step")
    return text


def _count(flag: str, most: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) > most:
            raise UsageError(
                f"{flag} expects a whole number from 0 to {most}, not {text!r}", "step"
            )
        return int(text)

    return parse


def _parser() -> Parser:
    parser = Parser(
        prog=STEP_MAGIC, command="step", description="Mark this cell as a pipeline step."
    )
    parser.add_argument("name", metavar="NAME")
    parser.add_argument(
        "--after",
        nargs="+",
        action="extend",
        default=[],
        metavar="STEP",
        help="run after these steps even without data between them",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="always run, never reuse a cached result"
    )
    parser.add_argument(
        "--image", default="", help="container image of this step (remote orchestrators)"
    )
    parser.add_argument("--cpu", type=_positive_number, help="CPU cores to request")
    parser.add_argument("--memory", type=_memory, help="memory to request: 512M, 4G, 8Gi")
    parser.add_argument("--gpu", type=_count("--gpu", MOST_GPUS), default=0, help="GPUs to request")
    parser.add_argument(
        "--retries", type=_count("--retries", MOST_RETRIES), default=0, help="retries on failure"
    )
    parser.add_argument("--operator", default="", help="step operator to run this step on")
    return parser


def parse_step_line(arguments: str) -> StepSettings:
    """Settings from what follows ``%%step`` on a cell's first line."""
    try:
        words = shlex.split(arguments)
    except ValueError as error:
        raise UsageError(str(error), "step") from None
    parsed = _parser().parse_args(words)
    if not _NAME.fullmatch(parsed.name):
        raise UsageError(
            f"invalid step name {parsed.name!r}: use up to 63 letters, digits, '-' or '_', "
            "starting with a letter",
            "step",
        )
    return StepSettings(
        name=parsed.name,
        after=tuple(dict.fromkeys(parsed.after)),
        no_cache=parsed.no_cache,
        image=parsed.image,
        cpu=parsed.cpu or "",
        memory=parsed.memory or "",
        gpu=parsed.gpu,
        retries=parsed.retries,
        operator=parsed.operator,
    )


def split_step_cell(source: str) -> tuple[str, str] | None:
    """``(arguments, body)`` for a ``%%step`` cell, None for any other cell."""
    text = source.lstrip("\n")
    first, _, body = text.partition("\n")
    if first != STEP_MAGIC and not first.startswith(STEP_MAGIC + " "):
        return None
    return first[len(STEP_MAGIC) :].strip(), body


def is_notebook_only(source: str) -> bool:
    """Whether a cell starts with ``%%notebook-only``: the pipeline leaves it out."""
    first = source.lstrip("\n").partition("\n")[0].rstrip()
    return first == NOTEBOOK_ONLY_MAGIC

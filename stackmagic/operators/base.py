"""The interface every step-operator backend implements, and the job it is handed.

Where the pipeline runs (this machine, a Kubeflow task, a cloud VM), a
backend instance turns one try of a step into the backend's request,
submits it, reports its state and log, and stops it. Inside the job, which
has only its :class:`OperatorJob` (no secret), the class's static
:meth:`StepOperator.read_secret` fetches the stores' secrets with the job's
own identity.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ..command_word import CommandWord
from ..errors import StackmagicError

if TYPE_CHECKING:
    from ..flavors.base import SecretResolver

ConfigT = TypeVar("ConfigT")

#: How a job's state reads, whatever the backend calls it.
PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "stopped",
)
ENDED = (SUCCEEDED, FAILED, STOPPED)


@dataclass(frozen=True)
class JobState:
    phase: str
    #: the backend's own words for why it failed or stopped
    reason: str = ""
    #: lost to a spot or preemptible machine taken back: another try may well succeed
    interrupted: bool = False


@dataclass(frozen=True)
class Resources:
    """What the step's ``%%step`` line asks for, in units every backend can compare."""

    cpu: float | None = None
    memory_gib: float | None = None
    gpu: int = 0
    image: str = ""
    #: the step's own words, for messages (``--cpu 8 --memory 32G``)
    cpu_text: str = ""
    memory_text: str = ""

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], default_image: str) -> Resources:
        cpu, memory = str(settings.get("cpu") or ""), str(settings.get("memory") or "")
        return cls(
            cpu=float(cpu) if cpu else None,
            memory_gib=memory_gib(memory) if memory else None,
            gpu=int(settings.get("gpu") or 0),
            image=str(settings.get("image") or default_image),
            cpu_text=cpu,
            memory_text=memory,
        )

    def asked(self) -> str:
        """``--cpu 8 --memory 32G --gpu 1``, or ``nothing in particular``."""
        words = [
            *([f"--cpu {self.cpu_text}"] if self.cpu_text else []),
            *([f"--memory {self.memory_text}"] if self.memory_text else []),
            *([f"--gpu {self.gpu}"] if self.gpu else []),
        ]
        return " ".join(words) or "nothing in particular"


_UNITS = {"": 1 / 2**30, "K": 1e3 / 2**30, "M": 1e6 / 2**30, "G": 1e9 / 2**30, "T": 1e12 / 2**30}
_UNITS.update({"Ki": 1 / 2**20, "Mi": 1 / 2**10, "Gi": 1.0, "Ti": 2.0**10})


def memory_gib(text: str) -> float:
    """``512M``, ``4G``, ``8Gi`` (the ``--memory`` grammar) in GiB."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", text)
    if not found:
        raise StackmagicError(f"--memory expects a size such as 512M, 4G or 8Gi, not {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2) or ""]


@dataclass
class OperatorJob(CommandWord):
    """What a job needs to run its step of a recorded run; no secret. Its command carries it."""

    called: ClassVar[str] = "job description"

    run_id: str
    step: str
    #: 1 for the step's first try, 2 for the one after it failed or was interrupted, ...
    attempt: int
    #: a failure of this try is recorded as waiting for the next one
    will_retry: bool
    #: the stores' description (``stores.portable``), secrets as ``env:`` references
    stores: dict[str, Any]
    #: the step operator's flavor: whose ``read_secret`` the job uses
    flavor: str
    #: where the stores' secrets wait: ``{"name": ..., **where}``, or empty when the backend
    #: sets them in the job's environment itself (a Kubernetes secret)
    secret: dict[str, Any] = field(default_factory=dict)

    def command(self) -> list[str]:
        """What the job's container runs."""
        return ["python", "-m", "stackmagic.runtime", "job", self.encode()]

    def name(self, most: int = 63) -> str:
        """A name backends accept (lower case, digits and ``-``), unique per run, step and try."""
        step = re.sub(r"[^a-z0-9-]+", "-", self.step.lower()).strip("-") or "step"
        tail = f"-{self.run_id}-try{self.attempt}"
        return f"sm-{step[: max(1, most - len(tail) - 3)]}{tail}"


class StepOperator(abc.ABC, Generic[ConfigT]):
    """Submitting, following and stopping one step's job on one backend."""

    flavor: ClassVar[str]
    #: where the job reads the stores' secrets from, for messages ("AWS Secrets Manager")
    secret_manager: ClassVar[str]

    def __init__(self, name: str, config: ConfigT, secret: SecretResolver) -> None:
        #: the component's name: what ``%%step --operator`` gives
        self.name, self.config, self.secret = name, config, secret

    def check(self, resources: Resources) -> None:  # noqa: B027 - most backends check nothing more
        """Refuse, before the run is recorded, what the backend would refuse (one line)."""

    def secret_location(self) -> dict[str, Any]:
        """What the job needs to read the stores' secrets (``{"name": ..., "region": ...}``),
        or ``{}`` where the backend puts them in the job's environment."""
        store_secret: str = getattr(self.config, "store_secret", "")
        return {"name": store_secret} if store_secret else {}

    @abc.abstractmethod
    def request(
        self, job: OperatorJob, resources: Resources, *, look_up: bool = True
    ) -> dict[str, Any]:
        """The backend's request for one try (JSON, no secret); ``look_up=False`` asks the
        backend nothing (a dry run). Raises a one-line error for what cannot fit."""

    @abc.abstractmethod
    def submit(self, job: OperatorJob, request: dict[str, Any]) -> tuple[str, str]:
        """Start the job: its id and the URL of its page in the backend's console."""

    @abc.abstractmethod
    def state(self, job_id: str) -> JobState:
        """The job's state now."""

    @abc.abstractmethod
    def logs(self, job_id: str, cursor: Any) -> tuple[list[str], Any]:
        """Log lines since ``cursor`` (None at first), and the cursor for the next call.

        Lines not there yet are no error: the next call gets them."""

    @abc.abstractmethod
    def stop(self, job_id: str) -> None:
        """Stop the job; one that has ended already is left as it is."""

    @staticmethod
    @abc.abstractmethod
    def read_secret(location: Mapping[str, Any]) -> str:
        """In the job: the text of the secret ``location`` names, read with the job's identity."""

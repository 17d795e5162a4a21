"""One step as a task whose command an orchestrator renders: an Airflow task, say.

``python -m stackmagic.runtime task DESCRIPTION --step S --run JSON --run-key JSON
--parameters JSON`` runs :func:`~stackmagic.runtime.task.run_task`. DESCRIPTION
(a :class:`TaskWord`) is fixed when the DAG file is written: the bundle's URI,
the stores (secrets as environment references) and the run's options. The
others come from the orchestrator's templates as JSON (so no value can break
out of its shell word): the run id ``pipeline run`` gave, else the
orchestrator's own name of the run, from which every task of that run derives
the same run id; and the run's parameter values.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, ClassVar

from ..command_word import CommandWord
from ..errors import StackmagicError
from ..stores.portable import wanted_secrets

#: An environment variable holding the stores' secret options as JSON (an Airflow Variable's).
SECRETS_JSON = "STACKMAGIC_STORE_SECRETS"


@dataclass
class TaskWord(CommandWord):
    """What every task of a DAG file shares; no secret."""

    called: ClassVar[str] = "task description"

    bundle_uri: str
    stores: dict[str, Any]
    #: the run's options: a schedule's name for the runs it starts
    options: dict[str, Any]


def derived_run_id(run_key: list[str]) -> str:
    """The same run id for every task of one orchestrator run, and a new one for each run."""
    digest = hashlib.sha256("\0".join(run_key).encode()).hexdigest()
    return f"af-{digest[:16]}"


def run_word(word: TaskWord, *, step: str, run: str, run_key: str, parameters: str) -> str:
    """Run ``step`` of the run the templates name; its run id. Raises if the step failed."""
    from .task import run_task

    run_id = _decoded(run, "--run", str) or derived_run_id(_decoded(run_key, "--run-key", list))
    values = _decoded(parameters, "--parameters", dict)
    secrets = os.environ.pop(SECRETS_JSON, "")
    if secrets:
        os.environ.update(wanted_secrets("the Airflow Variable", secrets, word.stores))
    run_task(
        step=step,
        run_id=run_id,
        bundle_uri=word.bundle_uri,
        stores=word.stores,
        parameters=values,
        options=word.options,
    )
    return run_id


def _decoded(text: str, option: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, kind):
        raise StackmagicError(
            f"{option} must be a JSON {kind.__name__}, not {text[:80]!r}: the DAG file renders "
            "it; export it again with `stackmagic pipeline export NOTEBOOK --to airflow`"
        )
    return value

"""Vertex AI experiments: a pipeline job joins one as Vertex AI's own SDK adds it.

An experiment is a context of schema ``system.Experiment`` in the region's
default metadata store (made here if missing); a job joins it when the job's
run context, which Vertex AI makes once the job starts, becomes the
experiment's child. The experiment's page then lists the job's runs with
their parameters, beside runs other tools logged there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import StackmagicError
from ..operators.vertex import explained

EXPERIMENT_SCHEMA = "system.Experiment"


def metadata_store(parent: str) -> str:
    """The default metadata store of ``projects/P/locations/L``."""
    return f"{parent}/metadataStores/default"


def ensure_experiment(metadata: Any, parent: str, experiment: str) -> str:
    """The experiment's context name, the context made if missing; a context of that id
    that is not an experiment (another tool's) is refused, not joined."""
    from google.api_core.exceptions import Conflict  # ALREADY_EXISTS, as REST says it
    from google.cloud.aiplatform_v1 import Context

    store = metadata_store(parent)
    name = f"{store}/contexts/{experiment}"
    wanted = Context(
        display_name=experiment, schema_title=EXPERIMENT_SCHEMA, schema_version="0.0.1"
    )
    try:
        metadata.create_context(parent=store, context=wanted, context_id=experiment)
        return name
    except Conflict:
        pass
    except Exception as error:
        raise explained(
            f"make the Vertex AI experiment {experiment}",
            error,
            "check --project, --region and that you may write Vertex ML Metadata",
        ) from None
    try:
        found = metadata.get_context(name=name)
    except Exception as error:
        raise explained(
            f"look up the Vertex AI experiment {experiment}", error, "check --project and --region"
        ) from None
    if found.schema_title != EXPERIMENT_SCHEMA:
        raise StackmagicError(
            f"--experiment={experiment} names a Vertex ML Metadata context that is no experiment "
            f"(its schema is {found.schema_title}): choose another experiment name"
        )
    return name


def join_experiment(
    metadata: Any,
    experiment: str,
    run_context: Callable[[], str | None],
    poll_seconds: float,
) -> bool:
    """Make the job's run context a child of ``experiment`` once Vertex AI has made it.

    ``run_context`` gives the context's name, "" while the job has none yet, or None
    once the job ended without one; False: the job ended first and joined nothing.
    """
    while (context := run_context()) == "":
        time.sleep(poll_seconds)
    if context is None:
        return False
    try:
        metadata.add_context_children(context=experiment, child_contexts=[context])
    except Exception as error:
        raise explained(
            f"add the pipeline job to the Vertex AI experiment {experiment.rsplit('/', 1)[1]}",
            error,
            "check that you may write Vertex ML Metadata",
        ) from None
    return True

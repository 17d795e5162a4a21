"""The airflow orchestrator: a pipeline as an Airflow DAG, its runs as DAG runs.

``pipeline run`` writes the bundle's DAG file where the stack says (a folder,
or an object-store prefix the DAG processor reads), waits until Airflow has
parsed that version of it, and triggers a DAG run whose conf names the run
recorded here; every task records its step in the stack's stores. The DAG of
ad-hoc runs is the pipeline's name; a schedule's DAG is its own
(``NAME.scheduled``), with the cron as its schedule, so running a pipeline by
hand never changes its schedule.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..component_type import ComponentType
from ..errors import StackmagicError
from ..stores.artifacts import ArtifactStore
from ..stores.models import RunStatus
from ..stores.portable import describe_stores, secret_variables
from .airflow_api import FINAL_STATES, AirflowApi
from .airflow_dag import RUN_CONF, DagFile, DagPlan, dag_file, dag_id_for
from .base import RunCancelled
from .following import follow, polled, settle_ended, step_outcomes

if TYPE_CHECKING:
    from ..flavors.orchestrators import AirflowOrchestrator
    from ..notebook.exporter import Bundle
    from ..open_stack import OpenStack
    from ..progress import Progress
    from ..runtime import RunContext, StepOutcome
    from ..schedules import Scheduled, ScheduleRequest
    from ..stores.metadata import MetadataStore, RunRecord

SCHEDULED_SUFFIX = ".scheduled"


def check_bundle(config: AirflowOrchestrator, stack: OpenStack, bundle: Bundle) -> None:
    """Refuse what the chosen operator cannot run: no image, or secrets with nowhere to come from."""
    if config.operator != "bash":
        missing = [
            name
            for name, step in bundle.steps.items()
            if not (
                (not step.settings.get("operator") and step.settings.get("image")) or config.image
            )
        ]
        if missing:
            raise StackmagicError(
                f"the {config.operator} operator needs an image with stackmagic installed: set "
                "--image on the airflow orchestrator (`stackmagic image dockerfile NOTEBOOK` "
                f"writes a Dockerfile for one), or `%%step --image` on {', '.join(missing)}"
            )
    variables = sorted(secret_variables(stack.components))
    if variables and config.operator != "bash" and not config.store_secret:
        where = (
            f"a Kubernetes secret with the keys {', '.join(variables)}"
            if config.operator == "kubernetes"
            else f"an Airflow Variable holding {{{', '.join(f'{v!r}: ...' for v in variables)}}}"
        )
        raise StackmagicError(
            f"the stack's stores have secret options, which reach {config.operator} tasks from "
            f"{where}: create it and give its name with --store-secret=NAME"
        )


def stack_dag_file(
    config: AirflowOrchestrator, stack: OpenStack, bundle: Bundle, bundle_uri: str, plan: DagPlan
) -> DagFile:
    return dag_file(bundle, bundle_uri, describe_stores(stack.name, stack.components), config, plan)


class AirflowRunner:
    """Runs a bundle as a DAG run of an Airflow reached through its REST API."""

    detached = True

    def __init__(self, config: AirflowOrchestrator, stack: OpenStack) -> None:
        self.config, self.stack = config, stack
        self.submitted = False

    def check(self, bundle: Bundle) -> None:
        check_bundle(self.config, self.stack, bundle)

    def run(self, context: RunContext, progress: Progress) -> list[StepOutcome]:
        plan = DagPlan(dag_id_for(context.bundle.pipeline), context.bundle.parameters)
        written = stack_dag_file(self.config, self.stack, context.bundle, context.bundle_uri, plan)
        api = self._api()
        self._publish(api, written)
        airflow_run = api.trigger(written.dag_id, {RUN_CONF: context.run_id})
        self.submitted = True
        url = api.run_url(written.dag_id, airflow_run)
        context.metadata.run_submitted(
            context.run_id, orchestrator_run_id=f"{written.dag_id}/{airflow_run}", url=url
        )
        if context.metadata.cancel_requested(context.run_id):  # cancelled as it was submitted
            _stop(api, written.dag_id, airflow_run)
            raise RunCancelled(context.run_id)
        progress.note(f"Airflow DAG run {written.dag_id} {airflow_run}: {url}")
        if not context.wait:
            return []
        follow(
            context,
            progress,
            still_going=polled(
                lambda: api.run_state(written.dag_id, airflow_run) not in FINAL_STATES,
                every=self.config.poll_seconds,
            ),
            interval=min(2.0, self.config.poll_seconds),
        )
        _reconcile(
            context.metadata, context.run_id, api.run_state(written.dag_id, airflow_run), url
        )
        return step_outcomes(context)

    def reconcile(self, record: RunRecord) -> None:
        """For ``pipeline describe``: a DAG run Airflow ended but no task recorded as ended."""
        if not (record.orchestrator_run_id and record.status == RunStatus.RUNNING):
            return
        dag_id, _, airflow_run = record.orchestrator_run_id.partition("/")
        with contextlib.suppress(StackmagicError):
            state = self._api().run_state(dag_id, airflow_run)
            if state in FINAL_STATES:
                _reconcile(self.stack.metadata, record.id, state, record.orchestrator_url or "")

    def terminate(self, record: RunRecord) -> None:
        """For ``pipeline cancel``: mark the DAG run failed, which stops its tasks."""
        if record.orchestrator_run_id:
            dag_id, _, airflow_run = record.orchestrator_run_id.partition("/")
            _stop(self._api(), dag_id, airflow_run)

    # -- schedules ---------------------------------------------------------------------

    def schedule(self, request: ScheduleRequest) -> Scheduled:
        """A DAG of its own for the schedule, with the cron as its schedule."""
        from ..schedules import Scheduled

        plan = DagPlan(
            dag_id_for(request.name) + SCHEDULED_SUFFIX,
            request.parameters,
            cron=request.cron,
            schedule=request.name,
            start=datetime.now(timezone.utc),
        )
        written = stack_dag_file(self.config, self.stack, request.bundle, request.bundle_uri, plan)
        api = self._api()
        self._publish(api, written)
        return Scheduled(orchestrator_id=written.dag_id, url=f"{api.url}/dags/{written.dag_id}")

    def unschedule(self, orchestrator_id: str) -> None:
        """Remove the schedule's DAG file, then the DAG and its history from Airflow."""
        name = f"{orchestrator_id}.py"
        if self.config.dags_folder:
            (Path(self.config.dags_folder).expanduser() / name).unlink(missing_ok=True)
        else:
            store = self._dags_store()
            store.delete([store.uri(name)])
        self._api().delete_dag(orchestrator_id)

    # -- placing DAG files -------------------------------------------------------------

    def _publish(self, api: AirflowApi, written: DagFile) -> None:
        """Put the file where Airflow reads DAGs; once parsed, unpause its DAG."""
        stale = api.load_error(f"{written.dag_id}.py")
        where = self._write(written)
        timeout = self.config.parse_timeout
        api.wait_for_dag(written.dag_id, written.version, timeout, where, stale=stale)
        api.unpause(written.dag_id)

    def _write(self, written: DagFile) -> str:
        name = f"{written.dag_id}.py"
        if self.config.dags_uri:
            store = self._dags_store()
            store.put_bytes(written.source.encode(), store.uri(name))
            return store.uri(name)
        folder = Path(self.config.dags_folder).expanduser()
        if not folder.is_dir():
            raise StackmagicError(
                f"the DAG folder {folder} does not exist; create it, or point the orchestrator "
                "at the folder Airflow reads (`stackmagic orchestrator update NAME --dags-folder=...`)"
            )
        # whole or not at all: the DAG processor may read the folder at any moment
        handle, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(written.source)
        os.chmod(temporary, 0o644)
        os.replace(temporary, folder / name)
        return str(folder / name)

    def _dags_store(self) -> ArtifactStore:
        """The DAGs' object-store prefix, reached with the artifact store's credentials."""
        return self.stack.artifact_store.elsewhere(self.config.dags_uri)

    def _api(self) -> AirflowApi:
        component = self.stack.components[ComponentType.ORCHESTRATOR]
        secret = self.config.secret_references()

        def resolved(option: str) -> str:
            return self.stack.resolve_secret(component, option) if option in secret else ""

        return AirflowApi(
            self.config.api_url,
            token=resolved("token") or None,
            username=self.config.username,
            password=resolved("password"),
        )


def _stop(api: AirflowApi, dag_id: str, airflow_run: str) -> None:
    if api.run_state(dag_id, airflow_run) not in FINAL_STATES:
        api.fail_run(dag_id, airflow_run)


def _reconcile(metadata: MetadataStore, run_id: str, state: str, url: str) -> None:
    """Airflow says the DAG run ended: finish its record if its tasks did not."""
    settle_ended(
        metadata,
        run_id,
        None
        if state == "success"
        else f"the Airflow DAG run ended {state} before its steps recorded their end (see {url})",
    )

"""MLflow: a parent run per pipeline run, a nested child run per step.

The tracker's credentials go to the client's REST store as explicit host credentials:
mlflow reads them from ``MLFLOW_TRACKING_*`` variables otherwise, and step kernels
inherit the environment. Requests are tried twice at most, each bounded by half of
``--timeout``, so a server out of reach costs seconds (mlflow retries for minutes).
mlflow is imported here only, when a run is mirrored.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..errors import StackmagicError
from ..flavors.experiment_trackers import MLflowTracker
from ..stores.models import RunStatus, StepStatus, utcnow
from .base import ExperimentTracker, StepNotebooks, TrackedRun, cache_status, pipeline_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from ..stores.metadata import RunRecord, StepRecord

_WEB = ("http", "https")
_RUN_ID, _STEP, _PARENT = "stackmagic.run_id", "stackmagic.step", "mlflow.parentRunId"
#: mlflow's limits per log_batch call, and on a tag's length
_BATCH_METRICS, _BATCH_PARAMS, _TAG_LENGTH = 1000, 100, 5000
#: steps mirrored as child runs: those that ran, came from the cache, or failed
_MIRRORED = (StepStatus.COMPLETED, StepStatus.CACHED, StepStatus.FAILED)
_RUN_END = {
    RunStatus.COMPLETED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.PREEMPTED: "FAILED",
    RunStatus.CANCELLED: "KILLED",
}


class MLflowExperimentTracker(ExperimentTracker[MLflowTracker]):
    """Mirrors runs to an MLflow tracking server (or a local mlruns folder / SQLite file)."""

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        uri = self.config.tracking_uri
        client = MlflowClient(uri)
        if urlparse(uri).scheme in _WEB:
            client._tracking_client = _tracking_service(uri, self._requests)
        elif self.config.token or self.config.username:
            raise StackmagicError(
                f"--token/--username/--password are for an http(s):// tracking server, not {uri!r}"
            )
        return client

    @cached_property
    def _requests(self) -> _Requests:
        return _Requests(self.config.tracking_uri, self._credentials, self.config.timeout)

    def _credentials(self, host: str) -> Any:
        from mlflow.utils.rest_utils import MlflowHostCreds

        password = self.secret("password") if self.config.password else None
        return MlflowHostCreds(
            host,
            username=self.config.username or None,
            password=password,
            token=self.secret("token") if self.config.token else None,
        )

    def start_run(self, run: RunRecord) -> TrackedRun:
        with self._explained():
            experiment = self._experiment(self.config.experiment or run.pipeline)
            parent = self.client.create_run(
                experiment,
                start_time=_millis(run.started_at),
                tags=pipeline_tags(run),
                run_name=run.id,
            )
            params = {name: _text(value) for name, value in run.parameters.items()}
            self._log(parent.info.run_id, params=params)
            return TrackedRun(parent.info.run_id, self._page(experiment, parent.info.run_id))

    def discard_run(self, tracked: TrackedRun) -> None:
        with self._explained():
            self.client.delete_run(tracked.id)

    def step_ended(
        self, run: RunRecord, tracked: TrackedRun, step: StepRecord, notebooks: StepNotebooks
    ) -> None:
        with self._explained():
            parent = self.client.get_run(tracked.id)
            if step.name not in self._children(parent):
                self._mirror_step(run, parent, step, notebooks)

    def run_ended(self, run: RunRecord, tracked: TrackedRun, notebooks: StepNotebooks) -> None:
        with self._explained():
            parent = self.client.get_run(tracked.id)
            mirrored = self._children(parent)
            for step in run.steps:  # those a process without the tracker recorded too
                if step.status in _MIRRORED and step.name not in mirrored:
                    self._mirror_step(run, parent, step, notebooks)
            if run.error:
                self.client.set_tag(tracked.id, "stackmagic.error", run.error[:_TAG_LENGTH])
            self.client.set_terminated(
                tracked.id, _RUN_END.get(run.status, "FAILED"), _millis(run.ended_at or utcnow())
            )

    def _mirror_step(
        self, run: RunRecord, parent: Run, step: StepRecord, notebooks: StepNotebooks
    ) -> None:
        experiment = parent.info.experiment_id
        tags = {
            _PARENT: parent.info.run_id,
            _RUN_ID: run.id,
            _STEP: step.name,
            "stackmagic.cache": cache_status(step),
            "stackmagic.cached_from": step.cached_from,
            "stackmagic.reason": step.reason,
            "stackmagic.error": step.error,
            "stackmagic.job_url": step.job_url,
        }
        if step.status == StepStatus.CACHED:
            tags["stackmagic.cached_from_mlflow_run"] = self._source(experiment, step)
        elif step.notebook_uri and not notebooks.upload:
            tags["stackmagic.notebook_uri"] = step.notebook_uri
        child = self.client.create_run(
            experiment,
            start_time=_millis(step.started_at or run.started_at),
            tags={name: value[:_TAG_LENGTH] for name, value in tags.items() if value},
            run_name=step.name,
        )
        child_id = child.info.run_id
        if step.status != StepStatus.CACHED:  # what it logged is on the run it came from
            self._log(child_id, metrics=_metrics(step))
            if notebooks.upload and (notebook := notebooks.local_copy(step)):
                self._upload(child.info.artifact_uri, child_id, notebook)
        status = "FAILED" if step.status == StepStatus.FAILED else "FINISHED"
        self.client.set_terminated(child_id, status, _millis(step.ended_at or utcnow()))

    def _children(self, parent: Run) -> set[str]:
        """The steps that have their nested run under ``parent`` already."""
        found = self.client.search_runs(
            [parent.info.experiment_id], f"tags.`{_PARENT}` = '{parent.info.run_id}'"
        )
        return {child.data.tags.get(_STEP, "") for child in found}

    def _source(self, experiment: str, step: StepRecord) -> str | None:
        """The MLflow run of the step run a cached step's outputs came from, if mirrored."""
        run_id, _, name = (step.cached_from or "").rpartition("/")
        found = self.client.search_runs(
            [experiment],
            f"tags.`{_RUN_ID}` = '{_quoted(run_id)}' AND tags.`{_STEP}` = '{_quoted(name)}'",
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        existing = self.client.get_experiment_by_name(name)
        if existing is None:
            try:
                return self.client.create_experiment(name)
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                existing = self.client.get_experiment_by_name(name)  # made meanwhile elsewhere
        if existing is None or existing.lifecycle_stage == "deleted":
            raise StackmagicError(
                f"the MLflow experiment {name!r} is deleted; restore it in MLflow, or give "
                "another --experiment"
            )
        return str(existing.experiment_id)

    def _log(
        self, run_id: str, params: dict[str, str] | None = None, metrics: list[Any] | None = None
    ) -> None:
        from mlflow.entities import Param

        listed = [Param(name, value) for name, value in (params or {}).items()]
        for first in range(0, len(listed), _BATCH_PARAMS):
            self.client.log_batch(run_id, params=listed[first : first + _BATCH_PARAMS])
        for first in range(0, len(metrics or []), _BATCH_METRICS):
            self.client.log_batch(run_id, metrics=(metrics or [])[first : first + _BATCH_METRICS])

    def _upload(self, artifact_uri: str, run_id: str, notebook: Path) -> None:
        if urlparse(artifact_uri).scheme in ("mlflow-artifacts", *_WEB):
            self._requests.upload(artifact_uri, f"notebook/{notebook.name}", notebook)
        else:  # the artifact store's own client, with its own credentials (S3, GCS, ...)
            self.client.log_artifact(run_id, str(notebook), "notebook")

    def _page(self, experiment: str, run_id: str) -> str:
        uri = self.config.tracking_uri
        if urlparse(uri).scheme not in _WEB:
            return ""
        return f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """MLflow's errors as one line each."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as error:
            first = (str(error.message).strip().splitlines() or [error.error_code])[0]
            raise StackmagicError(
                f"MLflow at {self.config.tracking_uri} answered: {first}"
            ) from None


class _Requests:
    """HTTP to the tracking server with the tracker's credentials, few retries, a timeout."""

    def __init__(self, uri: str, credentials: Any, timeout: float) -> None:
        self.uri, self.credentials, self.timeout = uri.rstrip("/"), credentials, timeout

    def send(self, host: str, endpoint: str, method: str, **options: Any) -> Any:
        from mlflow.exceptions import MlflowException
        from mlflow.utils.rest_utils import http_request

        try:
            response = http_request(
                self.credentials(host),
                endpoint,
                method,
                max_retries=1,
                backoff_factor=0.5,
                backoff_jitter=0,
                timeout=self.timeout / 2,
                **options,
            )
        except MlflowException as error:
            if why := _unreachable(error):
                raise StackmagicError(
                    f"cannot reach the MLflow tracking server at {self.uri} ({why})"
                ) from None
            raise
        if response.status_code in (401, 403):
            raise StackmagicError(
                f"the MLflow tracking server {self.uri} refused the credentials (HTTP "
                f"{response.status_code}); check the tracker's --token, or --username and "
                "--password"
            )
        return response

    def upload(self, artifact_uri: str, path: str, file: Path) -> None:
        from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

        if artifact_uri.startswith("mlflow-artifacts:"):
            artifact_uri = MlflowArtifactsRepository.resolve_uri(artifact_uri, self.uri)
        with file.open("rb") as content:
            response = self.send(
                artifact_uri,
                posixpath.join("/", path),
                "PUT",
                data=content,
                extra_headers={"Content-Type": "application/x-ipynb+json"},
            )
        if not response.ok:
            answer = (response.text.strip().splitlines() or [response.reason])[0]
            raise StackmagicError(
                f"MLflow at {self.uri} did not take the notebook {path}: HTTP "
                f"{response.status_code} {answer}"
            )


def _tracking_service(uri: str, http: _Requests) -> Any:
    """mlflow's tracking client on a REST store that sends through ``http``."""
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.tracking._tracking_service.client import TrackingServiceClient
    from mlflow.utils.proto_json_utils import parse_dict
    from mlflow.utils.rest_utils import verify_rest_response

    class BoundedRestStore(RestStore):
        def _call_endpoint(
            self,
            api: Any,
            json_body: str | None = None,
            endpoint: str | None = None,
            retry_timeout_seconds: float | None = None,
            response_proto: Any = None,
        ) -> Any:
            routes = self._V3_METHOD_TO_INFO if api in self._V3_APIS else self._METHOD_TO_INFO
            path, method = routes[api]
            endpoint = endpoint or path
            body = json.loads(json_body) if json_body else None
            given = {"params": body} if method == "GET" else {"json": body}
            response = verify_rest_response(http.send(uri, endpoint, method, **given), endpoint)
            answer = response_proto or api.Response()
            if response.status_code != 204:
                parse_dict(js_dict=response.json(), message=answer)
            return answer

    store = BoundedRestStore(lambda: http.credentials(uri))

    class Service(TrackingServiceClient):
        @property
        def store(self) -> RestStore:
            return store

        def _log_url(self, run_id: str) -> None:
            """Not the run's page on stdout as each run ends: stackmagic's output is its own."""

    return Service(uri)


def _unreachable(error: BaseException) -> str | None:
    """Why mlflow failed for want of a connection, if it did (it wraps what requests raised)."""
    import requests  # type: ignore[import-untyped]

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, (requests.Timeout, requests.ConnectionError)):
            text = str(cause)  # after retries, a read that timed out is a ConnectionError too
            if isinstance(cause, requests.Timeout) or "timed out" in text:
                return "no answer in time"
            return "connection refused" if "refused" in text else "no connection"
        cause = cause.__cause__ or cause.__context__
    return None


def _metrics(step: StepRecord) -> list[Any]:
    """Every value the step logged, at its step (or its place in its series) and time."""
    from mlflow.entities import Metric

    fallback = step.ended_at or utcnow()
    seen: dict[str, int] = {}
    metrics = []
    for point in step.metric_history:
        place = seen.get(point.name, 0)
        seen[point.name] = place + 1
        at = _millis(point.logged_at or fallback)
        metrics.append(
            Metric(point.name, point.value, at, place if point.step is None else point.step)
        )
    return metrics


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


TRACKER = MLflowExperimentTracker

"""Weights & Biases: one W&B run per pipeline run, written in one go when the run ends.

Steps of a run may end on several machines at once, and a W&B run has one writer
at a time; so the process that records the run's end makes the whole W&B run from
the metadata store's record: config (parameters and where it ran), each step's
metrics as ``STEP/METRIC`` plotted against their own ``STEP/step`` axis (W&B's
global step only grows, while each step's series starts again at 0), a summary of
each step's last values and cache status, and the executed step notebooks as one
artifact. The run's W&B id is the pipeline run's id, so ``start_run`` only works out
where the run will be.

The API key goes to W&B as a setting, never through ``os.environ``: step kernels
inherit the environment. Only two switches W&B reads nowhere else (no error reports
to W&B, no git probing) are set there while the run is written, then removed; W&B's
service is stopped once the run is written, so no process stays behind.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError
from ..flavors.experiment_trackers import WandbTracker
from ..stores.models import RunStatus
from .base import ExperimentTracker, StepNotebooks, TrackedRun, cache_status, pipeline_tags

if TYPE_CHECKING:
    from wandb import Artifact, Settings
    from wandb.sdk.wandb_run import Run as WandbRun

    from ..stores.metadata import RunRecord, StepRecord

#: seconds a W&B server may take to answer before the run is left unmirrored
_TIMEOUT = 15
#: W&B refuses longer tags
_TAG_LENGTH = 64
#: no error reports sent to W&B by its service, no git probing when W&B sets up (no secrets)
_QUIET = {"WANDB_ERROR_REPORTING": "false", "WANDB_DISABLE_GIT": "true"}
#: how W&B says the key was refused, and that the server could not be reached
_REFUSED = re.compile(r"AuthenticationError|not logged in|\b40[13]\b|unauthori[sz]ed|api key", re.I)
_UNREACHABLE = re.compile(r"connection refused|timed? ?out|deadline|no such host|unreachable", re.I)


class WandbRunTracker(ExperimentTracker[WandbTracker]):
    """Mirrors each pipeline run to one W&B run, named by the pipeline run's id."""

    @property
    def offline(self) -> bool:
        return self.config.mode == "offline"

    def start_run(self, run: RunRecord) -> TrackedRun:
        """Where the run will be: its page, or offline the folder W&B will write it to."""
        entity = self.config.entity or ("" if self.offline else self._default_entity())
        settings = self._settings(run, entity, self.config.directory or os.getcwd())
        if self.offline:
            return TrackedRun(run.id, str(Path(settings.wandb_dir) / f"offline-run-*-{run.id}"))
        return TrackedRun(run.id, settings.run_url)

    def run_ended(self, run: RunRecord, tracked: TrackedRun, notebooks: StepNotebooks) -> None:
        import wandb

        # a W&B run this process made itself (a notebook's own): W&B is left running for it
        shared = wandb.run is not None
        with _quiet_environment(), self._folder() as folder:
            settings = self._settings(run, self.config.entity, folder, run_id=tracked.id)
            try:
                if not shared:
                    wandb.setup(settings)  # quiet from the start: W&B's messages go nowhere
                written = wandb.init(
                    settings=settings,
                    config={**run.parameters, **pipeline_tags(run)},
                    reinit="create_new",
                )
                try:
                    _log_history(written, run)
                    written.summary.update(_summary(run))
                    if artifact := self._notebooks_artifact(run, notebooks):
                        written.log_artifact(artifact)
                finally:
                    written.finish(exit_code=0 if run.status == RunStatus.COMPLETED else 1)
            except StackmagicError:
                raise
            except Exception as error:  # W&B's errors, said in one line
                raise self._explained(error) from None
            finally:
                if not shared:
                    wandb.teardown()

    @contextmanager
    def _folder(self) -> Iterator[str]:
        """Where W&B writes the run's files: ``--directory``; offline, by default, W&B's own
        ``./wandb`` (the run stays there for `wandb sync`); online, a temporary folder."""
        if self.config.directory or self.offline:
            yield self.config.directory or os.getcwd()
            return
        with tempfile.TemporaryDirectory(prefix="stackmagic-wandb-") as folder:
            yield folder

    def _settings(
        self, run: RunRecord, entity: str, folder: str, *, run_id: str | None = None
    ) -> Settings:
        """Everything W&B is told, the key included, as settings: no console capture,
        no system metrics, no code saving or git probing, nothing printed."""
        from wandb import Settings

        key = self.secret("api_key") if self.config.api_key else None
        if not self.offline and not key:
            raise StackmagicError(
                "the wandb experiment tracker needs --api-key to mirror runs online "
                "(or --mode=offline)"
            )
        tags = [f"stack:{run.stack_name}"] + ([f"schedule:{run.schedule}"] if run.schedule else [])
        return Settings(
            mode="offline" if self.offline else "online",
            api_key=key,
            base_url=self.config.base_url,
            root_dir=folder,
            entity=entity or None,
            project=self.config.project or run.pipeline,
            run_id=run_id or run.id,
            run_name=run.id,
            run_group=self.config.group or run.pipeline,
            run_job_type="pipeline",
            run_tags=tuple(tag[:_TAG_LENGTH] for tag in tags),
            run_notes=(run.error or "").strip().split("\n")[0] or None,
            console="off",
            silent=True,
            quiet=True,
            show_info=False,
            show_warnings=False,
            save_code=False,
            disable_code=True,
            disable_git=True,
            disable_job_creation=True,
            x_disable_stats=True,
            x_disable_meta=True,
            x_disable_machine_info=True,
            x_save_requirements=False,
            init_timeout=_TIMEOUT,
            finish_timeout=4 * _TIMEOUT,
            finish_timeout_raises=True,
            x_graphql_timeout_seconds=_TIMEOUT,
            x_graphql_retry_max=2,
            x_graphql_retry_wait_min_seconds=1,
            x_graphql_retry_wait_max_seconds=4,
            x_file_stream_retry_max=3,
            x_file_transfer_retry_max=3,
        )

    def _default_entity(self) -> str:
        """The team or user the API key writes to when no --entity is given: the run's
        page is under it. Asked of the server once per run, when the run is recorded."""
        answer = self._graphql("query Viewer { viewer { entity } }")
        entity = (answer.get("viewer") or {}).get("entity")
        if not entity:
            raise StackmagicError(
                f"W&B at {self.config.base_url} names no default entity for this API key: "
                "register the tracker with --entity"
            )
        return str(entity)

    def _graphql(self, document: str) -> dict[str, Any]:
        credentials = base64.b64encode(f"api:{self.secret('api_key')}".encode()).decode()
        request = urllib.request.Request(
            f"{self.config.base_url.rstrip('/')}/graphql",
            data=json.dumps({"query": document}).encode(),
            headers={"Authorization": f"Basic {credentials}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            raise self._explained(error) from None
        except (OSError, ValueError) as error:
            raise StackmagicError(
                f"W&B at {self.config.base_url} is unreachable: "
                f"{_first_line(getattr(error, 'reason', error))}"
            ) from None
        if answer.get("errors"):
            raise StackmagicError(
                f"W&B at {self.config.base_url} refused: {answer['errors'][0].get('message')}"
            )
        return answer.get("data") or {}

    def _explained(self, error: BaseException) -> StackmagicError:
        text = _first_line(error)
        status = getattr(error, "code", None)
        if status in (401, 403) or _REFUSED.search(f"{type(error).__name__} {text}"):
            return StackmagicError(
                f"W&B at {self.config.base_url} refused the API key ({text}): check --api-key"
            )
        if _UNREACHABLE.search(text):
            return StackmagicError(f"W&B at {self.config.base_url} is unreachable: {text}")
        return StackmagicError(f"W&B: {text}")

    def _notebooks_artifact(self, run: RunRecord, notebooks: StepNotebooks) -> Artifact | None:
        """The executed step notebooks, as ``STEP.ipynb``: their copies, or links to where
        the artifact store keeps them."""
        import wandb

        executed = [step for step in run.steps if step.notebook_uri]
        if not executed:
            return None
        name = re.sub(r"[^\w.-]", "-", f"{run.pipeline}-notebooks")
        artifact = wandb.Artifact(name, type="notebooks", metadata={"stackmagic.run_id": run.id})
        for step in executed:
            copy = notebooks.local_copy(step) if notebooks.upload else None
            if copy is not None:
                artifact.add_file(str(copy), name=copy.name)
            else:
                location = _as_uri(str(step.notebook_uri))
                artifact.add_reference(location, name=f"{step.name}.ipynb", checksum=False)
        return artifact


def _log_history(written: WandbRun, run: RunRecord) -> None:
    """Each step's metrics, as rows of ``STEP/METRIC`` values against the step's own axis."""
    for step in run.steps:
        if not step.metric_history:
            continue
        axis = f"{step.name}/step"
        written.define_metric(axis, hidden=True)
        written.define_metric(f"{step.name}/*", step_metric=axis)
        for row in _rows(step, axis):
            written.log(row)


def _rows(step: StepRecord, axis: str) -> Iterator[dict[str, float]]:
    """The step's points by their position in their series (``step=``, or the order they
    were logged in); a metric logged twice at one position gets a second row."""
    logged: dict[str, int] = {}
    by_position: dict[int, list[dict[str, float]]] = {}
    for point in step.metric_history:
        position = logged.get(point.name, 0) if point.step is None else point.step
        logged[point.name] = logged.get(point.name, 0) + 1
        key = f"{step.name}/{point.name}"
        rows = by_position.setdefault(position, [])
        row = next((row for row in rows if key not in row), None)
        if row is None:
            row = {axis: position}
            rows.append(row)
        row[key] = point.value
        if point.logged_at is not None:
            row["_timestamp"] = point.logged_at.timestamp()
    for position in sorted(by_position):
        yield from by_position[position]


def _summary(run: RunRecord) -> dict[str, Any]:
    """Each step's last value of each metric, whether it ran or came from the cache."""
    summary: dict[str, Any] = {}
    for step in run.steps:
        summary.update({f"{step.name}/{name}": value for name, value in step.metrics})
        summary[f"{step.name}/cache"] = cache_status(step)
        if step.cached_from:
            summary[f"{step.name}/cached_from"] = step.cached_from
    return summary


def _as_uri(location: str) -> str:
    """An artifact store's location as W&B takes references: local paths as file:// URIs."""
    return location if "://" in location else Path(location).resolve().as_uri()


def _first_line(error: object) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@contextmanager
def _quiet_environment() -> Iterator[None]:
    """What W&B reads from the environment only, before any setting applies, set for the
    run (unless the user chose): the environment is left as it was."""
    added = [name for name in _QUIET if name not in os.environ]
    os.environ.update({name: _QUIET[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


TRACKER = WandbRunTracker

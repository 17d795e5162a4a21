"""The kubernetes orchestrator: a run in a cluster, an orchestrator pod and a pod per step.

The run is recorded here and its bundle is in the artifact store. A Job
``stackmagic-RUN`` with one small pod runs ``python -m stackmagic.runtime
cluster LAUNCH`` (see ``runtime/cluster.py``), which starts a Job per step
try through the Kubernetes step operator, independent steps at once, so the
run goes on once this process has ended. Nothing here or in any manifest is
a secret: every pod gets the stores' secrets from the Secret
``--store-secret`` names.

With ``--wait`` this process follows the run: the steps' records and the
orchestrator pod's log. The Job's pod is started again by the Job controller
when it is evicted (``--retries`` times, ``podFailurePolicy``); a run whose
pod failed otherwise fails with it. ``pipeline cancel`` deletes the Job and
every Job of the run, their pods with them. A schedule is a CronJob whose
Jobs are such orchestrator pods, each recording a new run.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ..component_type import ComponentType
from ..errors import StackmagicError
from ..operators.base import ENDED
from ..operators.kubernetes import Kubernetes
from ..operators.kubernetes_api import asked, given, label_value, placement
from ..output import Fields, Output
from ..runtime.cluster import JOB_VARIABLE, NAMESPACE_VARIABLE, ClusterLaunch, pods_cluster
from ..stores.models import RunStatus
from ..stores.portable import describe_stores, secret_variables
from .base import RunCancelled
from .following import follow, polled, step_outcomes

if TYPE_CHECKING:
    from kubernetes.client import V1Job

    from ..flavors.orchestrators import KubernetesOrchestrator
    from ..notebook.exporter import Bundle
    from ..open_stack import OpenStack
    from ..progress import Progress
    from ..runtime import RunContext, StepOutcome
    from ..schedules import Scheduled, ScheduleRequest
    from ..stores.metadata import RunRecord

#: the orchestrator pod's container
CONTAINER = "orchestrator"
#: what the orchestrator pod asks for: it starts pods and waits, it computes nothing
POD_REQUESTS = {"cpu": "100m", "memory": "256Mi"}
#: How often the Job's state is asked while following (an API call each time).
STATE_EVERY_SECONDS = 5.0
#: Finished Jobs a schedule's CronJob keeps, of each kind.
HISTORY = 3


class KubernetesRunner:
    """Starts a run's orchestrator pod and, with ``--wait``, follows it."""

    detached = True

    def __init__(self, config: KubernetesOrchestrator, stack: OpenStack) -> None:
        self.config, self.stack = config, stack
        self.submitted = False
        self._cluster: Kubernetes | None = None

    @property
    def cluster(self) -> Kubernetes:
        """The cluster as this machine reaches it: the step operator's client and calls."""
        if self._cluster is None:
            given = {"kubeconfig": self.config.kubeconfig, "context": self.config.context}
            self._cluster = pods_cluster(
                {**self._step_pods(), **{k: v for k, v in given.items() if v}}
            )
        return self._cluster

    # -- before the run ------------------------------------------------------------------

    def check(self, bundle: Bundle) -> None:
        variables = sorted(secret_variables(self.stack.components))
        if variables and not self.config.store_secret:
            raise StackmagicError(
                "the stack's stores have secret options, which reach the pods from a "
                "Kubernetes Secret, never from their manifests: create one (`kubectl create "
                f"secret generic stackmagic-stores --namespace={self.config.namespace} "
                + " ".join(f"--from-literal={v}=..." for v in variables)
                + "`) and name it: `stackmagic orchestrator update "
                f"{self.stack.components[ComponentType.ORCHESTRATOR].name} "
                "--store-secret=stackmagic-stores`"
            )

    def _step_pods(self) -> dict[str, Any]:
        """The steps' pods, as a Kubernetes step operator's options."""
        return {
            **self.config.pod_options(),
            "image": self.config.image,
            "store_secret": self.config.store_secret,
            "poll_seconds": self.config.poll_seconds,
        }

    def _launch(self, run_id: str, schedule: dict[str, Any] | None = None) -> ClusterLaunch:
        return ClusterLaunch(
            run_id=run_id,
            stores=describe_stores(self.stack.name, self.stack.components),
            pods=self._step_pods(),
            parallelism=self.config.parallelism,
            schedule=schedule or {},
        )

    def pod_template(self, launch: ClusterLaunch, labels: dict[str, str]) -> dict[str, Any]:
        """The orchestrator pod: the runtime in --image, the Secret as its environment."""
        config = self.config
        secret = [{"secretRef": {"name": config.store_secret}}] if config.store_secret else []
        own = {JOB_VARIABLE: "metadata.labels['batch.kubernetes.io/job-name']"}
        own[NAMESPACE_VARIABLE] = "metadata.namespace"
        container = {
            "name": CONTAINER,
            "image": config.image,
            "imagePullPolicy": config.image_pull_policy,
            "command": ["python", "-m", "stackmagic.runtime", "cluster", launch.encode()],
            "env": [
                {"name": "PYTHONUNBUFFERED", "value": "1"},
                *(
                    {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
                    for name, path in own.items()
                ),
            ],
            "resources": {"requests": dict(POD_REQUESTS)},
            **given(envFrom=secret),
        }
        return {
            "metadata": {"labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [container], **placement(config)},
        }

    def job_spec(self, launch: ClusterLaunch, labels: dict[str, str]) -> dict[str, Any]:
        """A pod lost to its node (evicted, preempted) is started again up to --retries times;
        one that failed (the run failed) fails the Job at once."""
        return {
            "backoffLimit": self.config.retries,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Count",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "NotIn",
                            "values": [0],
                        },
                    },
                ]
            },
            "ttlSecondsAfterFinished": self.config.ttl_seconds_after_finished,
            "template": self.pod_template(launch, labels),
        }

    def manifest(self, run_id: str) -> dict[str, Any]:
        """The run's orchestrator Job."""
        labels = {"stackmagic-run": label_value(run_id), "stackmagic-role": "orchestrator"}
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": f"stackmagic-{run_id}",
                "namespace": self.config.namespace,
                "labels": labels,
            },
            "spec": self.job_spec(self._launch(run_id), labels),
        }

    def preview(self, run_id: str, pipeline: str) -> Output:
        """What ``pipeline run --dry-run`` shows: the orchestrator Job; nothing is started."""
        manifest = self.manifest(run_id)
        return Fields(
            f"Dry run: kubernetes would create this Job in namespace {self.config.namespace} "
            f"for the pipeline {pipeline}; its pod starts a Job per step (nothing was started "
            "or recorded)",
            [("orchestrator Job", json.dumps(manifest, indent=2))],
            {"job": manifest},
            stacked=True,
        )

    # -- the run -------------------------------------------------------------------------

    def run(self, context: RunContext, progress: Progress) -> list[StepOutcome]:
        job_id = self._start(context, progress)
        if not context.wait:
            return []
        cursor: list[Any] = [None]
        why: list[str] = []

        def pod_going() -> bool:
            """The pod runs, or its Job starts another (the node took it back); one that
            cannot start (its image, its Secret) is given up, as a step's pod is."""
            state = self.cluster.state(job_id)
            if state.phase not in ENDED:
                return True
            if state.interrupted and _ended(self.cluster.read_job(job_id)) is None:
                return True
            why[:] = [state.reason or state.phase]
            return False

        going = polled(pod_going, STATE_EVERY_SECONDS)

        def still_going() -> bool:
            lines, cursor[0] = self.cluster.logs(job_id, cursor[0])
            for line in lines:
                progress.note(f"pod | {line}")
            return going()

        follow(context, progress, interval=self.config.poll_seconds, still_going=still_going)
        metadata, run_id = context.metadata, context.run_id
        if metadata.run(run_id).status == RunStatus.RUNNING:
            if metadata.cancel_requested(run_id):  # its Job was deleted for it
                metadata.run_cancelled(run_id)
            else:
                self._lost(run_id, job_id, ", ".join(why) or _ended(self.cluster.read_job(job_id)))
        return step_outcomes(context)

    def _start(self, context: RunContext, progress: Progress) -> str:
        manifest = self.manifest(context.run_id)
        job_id, url = self.cluster.submit_manifest(manifest)
        try:
            context.metadata.run_submitted(context.run_id, orchestrator_run_id=job_id, url=url)
        except BaseException:  # a Job nobody follows or records: gone again
            self.cluster.stop(job_id)
            raise
        self.submitted = True
        if context.metadata.cancel_requested(context.run_id):  # cancelled as it was submitted
            self.cluster.stop(job_id)
            raise RunCancelled(context.run_id)
        progress.note(
            f"kubernetes: Job {job_id} started for run {context.run_id}; its pod starts a Job "
            f"per step (`kubectl logs -n {self.config.namespace} job/{manifest['metadata']['name']}`)"
        )
        return job_id

    def terminate(self, record: RunRecord) -> None:
        """For ``pipeline cancel``: delete the orchestrator Job, then every Job of the run,
        their pods with them (in the background, as the garbage collector does)."""
        if record.orchestrator_run_id:
            self.cluster.stop(record.orchestrator_run_id)
        self._delete_jobs(record.id, record.orchestrator_run_id)

    def _delete_jobs(self, run_id: str, job_id: str | None) -> None:
        """Every Job labelled with the run (its steps', its orchestrator's), pods and all."""
        namespace = (job_id or self.config.namespace).split("/")[0]
        self.cluster.delete_jobs(namespace, f"stackmagic-run={label_value(run_id)}")

    def _lost(self, run_id: str, job_id: str, why: str | None) -> None:
        """The run's orchestrator pod is gone but the run never ended: it failed, and the
        step pods it left have nobody to follow them: they go."""
        self.stack.metadata.run_finished(
            run_id,
            error=f"the orchestrator pod of Job {job_id} ended before the run did: {why or 'gone'}",
        )
        self._delete_jobs(run_id, job_id)

    def reconcile(self, record: RunRecord) -> None:
        """For ``pipeline describe``: a run whose orchestrator Job is gone, or ended, but
        which never ended itself failed with it."""
        if not (record.orchestrator_run_id and record.status == RunStatus.RUNNING):
            return
        try:
            ended = _ended(self.cluster.read_job(record.orchestrator_run_id))
        except StackmagicError:
            return  # the cluster cannot be asked now: the record is shown as it is
        if ended is not None:
            self._lost(record.id, record.orchestrator_run_id, ended)

    # -- schedules -----------------------------------------------------------------------

    def schedule(self, request: ScheduleRequest) -> Scheduled:
        """A CronJob whose Jobs each record a new run of the bundle and carry it out."""
        from kubernetes.client import BatchV1Api

        from ..schedules import Scheduled

        # at most 52 characters: the CronJob controller adds 11 to its Jobs' names
        name = f"stackmagic-{_dns_label(request.name)}"[:52].rstrip("-")
        labels = {"stackmagic-schedule": label_value(request.name)}
        launch = self._launch(
            "",
            {
                "name": request.name,
                "notebook": request.notebook,
                "bundle_uri": request.bundle_uri,
                "parameters": request.parameters,
                "overridden": list(request.overridden),
                "stack": self.stack.snapshot(),
            },
        )
        manifest = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": name, "namespace": self.config.namespace, "labels": labels},
            "spec": {
                "schedule": request.cron,
                "timeZone": "Etc/UTC",  # stackmagic's crons are UTC, whatever the controller's
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": HISTORY,
                "failedJobsHistoryLimit": HISTORY,
                "jobTemplate": {
                    "metadata": {"labels": labels},
                    "spec": self.job_spec(launch, labels),
                },
            },
        }
        namespace = self.config.namespace
        asked(
            f"cannot create the Kubernetes CronJob {namespace}/{name}",
            BatchV1Api(self.cluster.api()).create_namespaced_cron_job,
            namespace,
            manifest,
        )
        return Scheduled(
            orchestrator_id=f"{namespace}/{name}",
            url=self.cluster.batch_url("cronjobs", namespace, name),
        )

    def unschedule(self, orchestrator_id: str) -> None:
        """Delete the schedule's CronJob; its Job that runs, if any, is orphaned to end as it
        would (its run recorded), then go after ``--ttl-seconds-after-finished``."""
        from kubernetes.client import BatchV1Api

        namespace, _, name = orchestrator_id.partition("/")
        asked(
            f"cannot delete the Kubernetes CronJob {orchestrator_id}",
            BatchV1Api(self.cluster.api()).delete_namespaced_cron_job,
            name,
            namespace,
            propagation_policy="Orphan",
            gone=(404,),
        )


def _ended(job: V1Job | None) -> str | None:
    """None while the Job goes on; else how it ended, in its controller's words."""
    if job is None:
        return "its Job was deleted"
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            said = f"{condition.reason}: {condition.message}" if condition.reason else ""
            return f"its Job {condition.type.lower()}" + (f" ({said})" if said else "")
    return None


def _dns_label(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "schedule"

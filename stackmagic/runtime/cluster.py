"""A whole recorded run from an orchestrator pod: what the kubernetes orchestrator's Job runs.

``python -m stackmagic.runtime cluster LAUNCH`` gets everything from LAUNCH
(it holds no secret): the run (or, for a schedule, what makes each of its
runs), the stores' description and the options of the steps' pods. The
stores' secrets are in the pod's environment, from the Secret its
``envFrom`` names. It starts a Job per step try through the Kubernetes step
operator (reaching the API server with the pod's service account),
independent steps at once up to ``parallelism``, and records how the run
ended. Its log is the pod's, also kept in the artifact store.

A pod the Job controller starts again (its first was evicted) carries on the
same run: the steps the lost pod finished stay.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..command_word import CommandWord
from ..errors import StackmagicError
from ..operators.driving import StepOperatorDriver
from ..scratch import ScratchFolder
from ..stores.artifacts import ArtifactStore
from ..stores.metadata import MetadataStore
from ..stores.models import StepStatus
from ..stores.portable import open_stores
from .carrying import carry_on, run_log
from .task import forget_secrets

if TYPE_CHECKING:
    from ..operators.kubernetes import Kubernetes

#: Set in the orchestrator pod from its own metadata (the downward API): where it is.
JOB_VARIABLE, NAMESPACE_VARIABLE = "STACKMAGIC_JOB", "STACKMAGIC_NAMESPACE"


@dataclass
class ClusterLaunch(CommandWord):
    """What an orchestrator pod needs to carry on a run; no secret."""

    called: ClassVar[str] = "launch description"

    #: the recorded run; "" for a schedule's pod, which records a new run each time
    run_id: str
    stores: dict[str, Any]
    #: the steps' pods: the options of a Kubernetes step operator
    pods: dict[str, Any]
    #: step pods at once
    parallelism: int
    #: a schedule's: name, notebook, bundle_uri, parameters, overridden, stack (snapshot)
    schedule: dict[str, Any]


def pod_log_uri(store: ArtifactStore, pipeline: str, run_id: str, attempt: int) -> str:
    """Where the orchestrator pod of a run's try keeps its log."""
    return store.uri(pipeline, run_id, f"orchestrator-pod-{attempt}.log")


def pods_cluster(options: dict[str, Any]) -> Kubernetes:
    """The cluster the steps' pods of ``options`` (a Kubernetes step operator's) run in."""
    from ..flavors.step_operators import KubernetesStepOperator
    from ..operators.kubernetes import Kubernetes

    config = KubernetesStepOperator.from_options(options, Path.cwd())
    assert isinstance(config, KubernetesStepOperator)
    return Kubernetes("kubernetes", config, _no_secret)


def run_in_cluster(launch: ClusterLaunch) -> str | None:
    """Carry on the run from this pod; returns why it failed, or None."""
    from ..operators.kubernetes_api import label_value

    artifact_store, metadata = open_stores(launch.stores)
    step_operator = StepOperatorDriver.from_description(launch.stores)
    forget_secrets(launch.stores)  # the stores have them; the steps' code must not
    cluster = pods_cluster(launch.pods)
    pods = StepOperatorDriver(cluster, launch.stores)
    here = f"{os.environ.get(NAMESPACE_VARIABLE, '')}/{os.environ.get(JOB_VARIABLE, '')}"
    run_id = launch.run_id or _record_scheduled(launch, artifact_store, metadata, cluster, here)
    record = metadata.run(run_id)
    # a pod started again after its Job's first was lost: the steps that one finished stay,
    # those it was running start again (the Jobs it left for them go first)
    resumed = any(step.status != StepStatus.PENDING for step in record.steps)
    if resumed:
        namespace = os.environ.get(NAMESPACE_VARIABLE) or cluster.config.namespace
        cluster.delete_jobs(namespace, f"stackmagic-run={label_value(run_id)},stackmagic-step")
    attempt = 1
    while artifact_store.exists(pod_log_uri(artifact_store, record.pipeline, run_id, attempt)):
        attempt += 1  # an earlier pod of this Job was lost
    with run_log(sys.stdout, pod_log_uri(artifact_store, record.pipeline, run_id, attempt)) as log:
        log.say(f"stackmagic: run {run_id}, try {attempt}, from the pod of Job {here}")
        try:
            with log.copied_to(artifact_store):
                error = carry_on(
                    run_id,
                    artifact_store,
                    metadata,
                    log,
                    resumed=resumed,
                    step_operator=step_operator,
                    step_jobs=pods,
                    max_workers=launch.parallelism,
                )
        except BaseException as failure:  # a store or the cluster broke: said in the log
            log.say(f"stackmagic: the run stopped: {type(failure).__name__}: {failure}")
            raise
        log.say(f"stackmagic: run {run_id} {'failed: ' + error if error else 'completed'}")
    return error


def _record_scheduled(
    launch: ClusterLaunch,
    artifact_store: ArtifactStore,
    metadata: MetadataStore,
    cluster: Kubernetes,
    job_id: str,
) -> str:
    """Record the run this Job of the schedule's CronJob makes, once: a pod started again
    for the same Job finds it recorded (its id comes from the Job)."""
    from ..pipelines import fetch_bundle

    job = cluster.read_job(job_id)
    if job is None:
        raise StackmagicError(f"the Job {job_id} of this pod is gone: it was deleted")
    run_id = f"{job.metadata.creation_timestamp:%Y%m%d-%H%M%S}-{job.metadata.uid[:6]}"
    schedule = launch.schedule
    with ScratchFolder("bundle") as scratch:
        bundle = fetch_bundle(artifact_store, schedule["bundle_uri"], Path(scratch))
    metadata.create_run(
        run_id=run_id,
        pipeline=bundle.pipeline,
        notebook=schedule["notebook"],
        stack_name=str(launch.stores.get("stack", "")),
        stack=schedule["stack"],
        bundle_uri=schedule["bundle_uri"],
        bundle_hash=bundle.hash,
        options={"no_cache": False, "only": None, "from": None},
        parameters=schedule["parameters"],
        overridden=schedule["overridden"],
        steps=list(bundle.steps),
        driven_here=False,
        exist_ok=True,
        schedule=schedule["name"],
    )
    namespace, _, name = job_id.partition("/")
    metadata.run_submitted(
        run_id, orchestrator_run_id=job_id, url=cluster.batch_url("jobs", namespace, name)
    )
    return run_id


def _no_secret(option: str) -> str:
    raise StackmagicError(
        f"the steps' pods take no secret option (--{option.replace('_', '-')}): the stores' "
        "secrets reach them from the Secret --store-secret names"
    )

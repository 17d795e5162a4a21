"""Orchestrator flavors: what runs a pipeline's steps, and where."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import traitlets as t

from ..errors import StackmagicError
from .base import OrchestratorConfig, require_module
from .kubernetes_pods import KubernetesPods

if TYPE_CHECKING:
    from ..open_stack import OpenStack
    from ..orchestrators.base import Orchestrator


#: The most steps the local orchestrator runs at once: each may hold a kernel of its own.
MOST_WORKERS = 256


class LocalOrchestrator(OrchestratorConfig):
    """Runs the steps on this machine, independent steps in parallel (the default)."""

    flavor = "local"

    max_workers = t.Int(
        0, help="Steps run at once; 0 means the number of CPU cores plus 4 (steps often wait)."
    )

    warm_steps = t.Bool(
        True,
        help="Run the setup cells once and start each step's kernel as a fork of that process; "
        "false: a fresh kernel per step, which runs the setup again.",
    )

    @t.validate("max_workers")
    def _check_max_workers(self, proposal: dict[str, Any]) -> int:
        if not 0 <= proposal["value"] <= MOST_WORKERS:
            raise t.TraitError(
                f"expects 0 (automatic) or a number of steps from 1 to {MOST_WORKERS}"
            )
        return proposal["value"]

    @property
    def runs_remotely(self) -> bool:
        return False

    def orchestrator(self, stack: OpenStack) -> Orchestrator:
        from ..orchestrators.local import LocalRunner

        return LocalRunner(self.max_workers, self.warm_steps)


class KubeflowOrchestrator(OrchestratorConfig):
    """Kubeflow Pipelines (KFP v2), on a cluster or on this machine through kfp.local."""

    flavor = "kubeflow"
    #: The kfp SDK is an extra: 75 MB that a laptop on the local stack never uses. A step
    #: image needs it too, for kfp's executor starts each task.
    extra: ClassVar[str] = "kubeflow"

    host = t.Unicode(help="KFP API endpoint, https://host/pipeline.")
    mode = t.Enum(
        ["remote", "local"],
        "remote",
        help="remote submits to the KFP host; local runs the compiled pipeline here with kfp.local.",
    )
    namespace = t.Unicode("kubeflow", help="Kubernetes namespace of the runs.")
    experiment = t.Unicode(help="KFP experiment; default: the pipeline's name.")
    image = t.Unicode(help="Container image the steps run in (with stackmagic installed).")
    image_pull_policy = t.Enum(
        ["IfNotPresent", "Always", "Never"], "IfNotPresent", help="Kubernetes image pull policy."
    )
    service_account = t.Unicode(help="Kubernetes service account of the step pods.")
    auth = t.Enum(
        ["none", "token", "in-cluster"],
        "none",
        help="How to authenticate to KFP: no auth, --token, or the pod's service-account token.",
    )
    token = t.Unicode(help="Bearer token for the KFP API (with --auth=token).").tag(secret=True)
    store_secret = t.Unicode(
        help="Kubernetes secret holding the stores' secret options, one key each "
        "(STACKMAGIC_METADATA_STORE_PASSWORD...), given to the steps as environment variables."
    )
    gpu_resource = t.Unicode(
        "nvidia.com/gpu", help="Kubernetes resource that %%step --gpu asks for."
    )

    @property
    def runs_remotely(self) -> bool:
        return self.mode == "remote"

    def orchestrator(self, stack: OpenStack) -> Orchestrator:
        for module in ("kfp", "kfp.kubernetes"):
            require_module(module, "the kubeflow orchestrator", self.extra)
        from ..orchestrators.kubeflow import KubeflowRunner

        return KubeflowRunner(self, stack)

    def check(self) -> None:
        super().check()
        if self.mode == "remote" and not self.host:
            raise StackmagicError(
                "the kubeflow orchestrator needs --host (the KFP API URL), or --mode=local "
                "to run pipelines on this machine with kfp.local"
            )
        if self.auth == "token" and not self.token:
            raise StackmagicError("--auth=token needs --token (or --token=env:VARIABLE)")


class AirflowOrchestrator(OrchestratorConfig):
    """Apache Airflow 3 (REST API v2): each pipeline becomes a DAG file, its runs DAG runs."""

    flavor = "airflow"

    api_url = t.Unicode(
        help="URL of Airflow's API server, http://airflow:8080 (its REST API is /api/v2)."
    )
    username = t.Unicode(help="Airflow user the API is used as (with --password).")
    password = t.Unicode(help="That user's password; Airflow trades it for a token.").tag(
        secret=True
    )
    token = t.Unicode(help="An Airflow API token (JWT), instead of --username/--password.").tag(
        secret=True
    )
    dags_folder = t.Unicode(
        help="Folder Airflow's DAG processor reads, where DAG files are written."
    ).tag(local_path=True)
    dags_uri = t.Unicode(
        help="Object-store prefix Airflow's DAG processor reads (an S3 DAG bundle, say), "
        "written through the artifact store's credentials; instead of --dags-folder."
    )
    operator = t.Enum(
        ["bash", "kubernetes", "docker"],
        "bash",
        help="What each task is: bash runs the runtime on the worker (stackmagic installed "
        "there); kubernetes a pod of --image; docker a container of --image.",
    )
    python = t.Unicode("python", help="bash: the workers' Python that has stackmagic installed.")
    image = t.Unicode(
        help="kubernetes, docker: image the steps run in (with stackmagic installed)."
    )
    namespace = t.Unicode(help="kubernetes: namespace of the step pods; default: Airflow's own.")
    gpu_resource = t.Unicode(
        "nvidia.com/gpu", help="kubernetes: resource that %%step --gpu asks for."
    )
    store_secret = t.Unicode(
        help="Where the stores' secret options come from: kubernetes, a Kubernetes secret with one "
        "key each (STACKMAGIC_METADATA_STORE_PASSWORD...); bash and docker, an Airflow Variable "
        "holding them as JSON. Empty with bash: the workers' environment."
    )
    poll_seconds = t.Float(5.0, help="How often a followed DAG run's state is asked.")
    parse_timeout = t.Float(
        300.0,
        help="Seconds to wait for Airflow to parse a new DAG file (its DAG processor looks for "
        "new files every [dag_processor] refresh_interval seconds).",
    )

    @t.validate("poll_seconds", "parse_timeout")
    def _check_seconds(self, proposal: dict[str, Any]) -> float:
        if proposal["value"] <= 0:
            raise t.TraitError("expects a number of seconds above 0")
        return float(proposal["value"])

    @t.validate("store_secret")
    def _check_secret_name(self, proposal: dict[str, Any]) -> str:
        value: str = proposal["value"]
        if value and not all(c.isalnum() or c in "-_." for c in value):
            raise t.TraitError("expects a name of letters, digits, '-', '_' and '.'")
        return value

    def local_paths(self) -> list[Path]:
        return [Path(self.dags_folder)] if self.dags_folder else []

    def orchestrator(self, stack: OpenStack) -> Orchestrator:
        from ..orchestrators.airflow import AirflowRunner

        return AirflowRunner(self, stack)

    def check(self) -> None:
        super().check()
        if self.dags_folder and self.dags_uri:
            raise StackmagicError("give --dags-folder or --dags-uri, not both")
        missing = [
            *([] if self.api_url else ["--api-url (Airflow's API server, http://HOST:8080)"]),
            *(
                []
                if self.dags_folder or self.dags_uri
                else [
                    "--dags-folder (a folder Airflow reads) or --dags-uri (an object-store "
                    "prefix its DAG processor reads)"
                ]
            ),
        ]
        if missing:
            raise StackmagicError(f"the airflow orchestrator needs {' and '.join(missing)}")
        if bool(self.username) != bool(self.password):
            raise StackmagicError("--username and --password go together")


class KubernetesOrchestrator(KubernetesPods, OrchestratorConfig):
    """Runs the pipeline in a Kubernetes cluster: an orchestrator pod starts a pod per step."""

    flavor = "kubernetes"
    extra: ClassVar[str] = "kubernetes"

    image = t.Unicode(
        help="Container image of the orchestrator pod and the steps' pods (with stackmagic "
        "and the notebook's packages); a step's --image takes precedence for its pod."
    ).tag(required=True)
    store_secret = t.Unicode(
        help="Kubernetes Secret holding the stores' secret options, one key each "
        "(STACKMAGIC_METADATA_STORE_PASSWORD...), given to every pod as its environment."
    )
    parallelism = t.Int(4, help="Step pods at once.")
    retries = t.Int(
        0,
        help="How often an orchestrator pod that is lost (evicted, its node gone) is started "
        "again; the new one keeps the steps the lost one finished.",
    )
    poll_seconds = t.Float(5.0, help="How often the pods' states and logs are asked.")

    @t.validate("parallelism")
    def _check_parallelism(self, proposal: dict[str, Any]) -> int:
        if not 1 <= proposal["value"] <= MOST_WORKERS:
            raise t.TraitError(f"expects a number of pods from 1 to {MOST_WORKERS}")
        return proposal["value"]

    @t.validate("retries")
    def _check_not_negative(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 0:
            raise t.TraitError("expects 0 or more")
        return proposal["value"]

    @t.validate("poll_seconds")
    def _check_poll(self, proposal: dict[str, Any]) -> float:
        if not 0.1 <= proposal["value"] <= 600:
            raise t.TraitError("expects from 0.1 to 600 seconds")
        return float(proposal["value"])

    def orchestrator(self, stack: OpenStack) -> Orchestrator:
        require_module("kubernetes", "the kubernetes orchestrator", self.extra)
        from ..orchestrators.kubernetes import KubernetesRunner

        return KubernetesRunner(self, stack)

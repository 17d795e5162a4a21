"""Where a compiled KFP pipeline's tasks run, and what that makes of their ``%%step`` settings:
pods of a Kubeflow cluster, or Vertex AI's containers (see vertex.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..stores.portable import secret_variables

if TYPE_CHECKING:
    from ..flavors.orchestrators import KubeflowOrchestrator
    from ..notebook.exporter import Bundle
    from ..open_stack import OpenStack


class TaskPlatform(Protocol):
    """Where the pipeline's tasks run: what their settings become, where their secrets wait."""

    #: the image the steps run in, unless a step names its own
    image: str

    def dress(self, task: Any, settings: Mapping[str, Any]) -> None:
        """Give ``task`` the step's ``%%step`` settings and what the platform needs."""
        ...

    def secret_location(self) -> dict[str, Any]:
        """Where a task reads the stores' secrets from; empty: its environment has them."""
        ...


class KubernetesTasks:
    """Tasks as pods of a KFP cluster: the stores' secrets come from a Kubernetes secret."""

    def __init__(self, config: KubeflowOrchestrator, stack: OpenStack) -> None:
        self.config, self.image = config, config.image
        self.secret_keys = sorted(secret_variables(stack.components))

    def dress(self, task: Any, settings: Mapping[str, Any]) -> None:
        from kfp import kubernetes

        set_resources(task, settings, self.config.gpu_resource)
        kubernetes.set_image_pull_policy(task, self.config.image_pull_policy)
        if self.secret_keys and self.config.store_secret:
            kubernetes.use_secret_as_env(
                task,
                secret_name=self.config.store_secret,
                secret_key_to_env={key: key for key in self.secret_keys},
            )

    def secret_location(self) -> dict[str, Any]:
        return {}


def set_resources(task: Any, settings: Mapping[str, Any], accelerator: str) -> None:
    """``%%step --cpu/--memory/--gpu/--retries/--image`` as the task's Kubernetes settings.

    A step a step operator runs asks its job for them: its task only submits the job and
    waits, on the pipeline's image; each retry of the task is a new job."""
    if settings.get("retries"):
        task.set_retry(int(settings["retries"]))
    if settings.get("operator"):
        return
    if settings.get("cpu"):
        task.set_cpu_request(str(settings["cpu"])).set_cpu_limit(str(settings["cpu"]))
    if settings.get("memory"):
        task.set_memory_request(settings["memory"]).set_memory_limit(settings["memory"])
    if settings.get("gpu"):
        task.set_accelerator_type(accelerator).set_accelerator_limit(int(settings["gpu"]))
    if settings.get("image"):
        task.set_container_image(settings["image"])


def steps_without_image(bundle: Bundle, image: str) -> list[str]:
    """The steps that would have no image to run in: nothing is installed when a task starts."""
    return [
        name for name, spec in bundle.steps.items() if not (spec.settings.get("image") or image)
    ]

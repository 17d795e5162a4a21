"""The pod options a Kubernetes step operator and the kubernetes orchestrator share.

Both start pods in a cluster: where (kubeconfig, context, namespace), as whom
(service account), on which nodes (selector, tolerations), from which
registry (pull policy and secrets), what ``--gpu`` asks for and how long a
finished Job stays. Declared once
here, checked once.
"""

from __future__ import annotations

from typing import Any

import traitlets as t


class KubernetesPods(t.HasTraits):
    """Options of the pods a Kubernetes flavor starts (a mixin of its config class)."""

    namespace = t.Unicode("default", help="Namespace of the Jobs and their pods.")
    kubeconfig = t.Unicode(
        help="kubeconfig file; default: $KUBECONFIG or ~/.kube/config, else the pod's own account."
    ).tag(local_path=True)
    context = t.Unicode(help="kubeconfig context; default: its current one.")
    service_account = t.Unicode(help="Service account of the pods.")
    node_selector = t.Dict(help="Node labels the pods need, KEY=VALUE,KEY=VALUE.")
    tolerations = t.List(
        t.Unicode(),
        help="Taints the pods tolerate, KEY=VALUE:EFFECT or KEY:EFFECT, comma-separated.",
    )
    image_pull_policy = t.Enum(
        ["IfNotPresent", "Always", "Never"], "IfNotPresent", help="Image pull policy."
    )
    image_pull_secrets = t.List(
        t.Unicode(), help="Secrets for a private registry, comma-separated."
    )
    gpu_resource = t.Unicode("nvidia.com/gpu", help="Resource name a step's --gpu asks for.")
    ttl_seconds_after_finished = t.Int(
        24 * 3600,
        help="Seconds a finished Job and its pods are kept before Kubernetes deletes them.",
    )

    @t.validate("tolerations")
    def _check_tolerations(self, proposal: dict[str, Any]) -> list[str]:
        from ..operators.kubernetes_api import toleration

        try:
            for text in proposal["value"]:
                toleration(text)
        except ValueError as error:
            raise t.TraitError(str(error)) from None
        return list(proposal["value"])

    @t.validate("ttl_seconds_after_finished")
    def _check_ttl(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 0:
            raise t.TraitError("expects 0 or more seconds")
        return int(proposal["value"])

    def pod_options(self) -> dict[str, Any]:
        """The pod options given (not defaults), without where the cluster is: for a process
        in the cluster, which reaches it with its pod's service account."""
        return {
            name: getattr(self, name)
            for name, trait in KubernetesPods.class_traits().items()
            if name not in ("kubeconfig", "context") and getattr(self, name) != trait.default()
        }

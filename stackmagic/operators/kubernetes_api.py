"""Kubernetes objects and calls the step operator and the kubernetes orchestrator share.

Pieces of a pod's manifest from the options (tolerations, placement, label
values, quantities) and one way to call the API server: its errors as one
line saying what failed and what to check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import StackmagicError

if TYPE_CHECKING:
    from ..flavors.kubernetes_pods import KubernetesPods

_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_TOLERATION = re.compile(
    r"(?P<key>[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?)"
    r"(=(?P<value>([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?))?"
    rf":(?P<effect>{'|'.join(_EFFECTS)})"
)


def toleration(text: str) -> dict[str, str]:
    """``KEY=VALUE:EFFECT`` (Equal) or ``KEY:EFFECT`` (Exists) as a pod's toleration."""
    found = _TOLERATION.fullmatch(text.strip())
    if not found:
        raise ValueError(
            f"{text!r} is not KEY=VALUE:EFFECT or KEY:EFFECT with EFFECT one of "
            f"{', '.join(_EFFECTS)} (gpu=true:NoSchedule, say)"
        )
    if found.group("value") is None:
        return {"key": found.group("key"), "operator": "Exists", "effect": found.group("effect")}
    return {
        "key": found.group("key"),
        "operator": "Equal",
        "value": found.group("value"),
        "effect": found.group("effect"),
    }


def placement(config: KubernetesPods) -> dict[str, Any]:
    """Where and as whom a pod runs, from the pod options both Kubernetes flavors share."""
    return given(
        serviceAccountName=config.service_account,
        nodeSelector=dict(config.node_selector),
        tolerations=[toleration(text) for text in config.tolerations],
        imagePullSecrets=[{"name": name} for name in config.image_pull_secrets],
    )


def label_value(text: str) -> str:
    """``text`` as a label value: at most 63 of letters, digits, ``-_.``, alphanumeric ends."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")


def quantity(text: str) -> str:
    """The step's ``--memory`` as a Kubernetes quantity: the same, but a kilo is a small k."""
    return text[:-1] + "k" if text.endswith("K") else text


def asked(
    doing: str, call: Callable[..., Any], *args: Any, gone: tuple[int, ...] = (), **kwargs: Any
) -> Any:
    """``call``'s answer; None when the API server answers a status of ``gone``; its other
    errors (or none, when it cannot be reached) as one line saying what failed."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return call(*args, **kwargs)
    except ApiException as error:
        if error.status in gone:
            return None
        raise _error(doing, error) from None
    except HTTPError as error:
        raise _error(doing, error) from None


def _error(doing: str, error: Exception) -> StackmagicError:
    """One line: what failed, the API server's words, what to check."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(error, ApiException):  # no answer: urllib3's words, the cause last
        cause = str(getattr(error, "reason", None) or error).rsplit(": ", 1)[-1]
        return StackmagicError(
            f"{doing}: the API server cannot be reached ({cause}); check --kubeconfig and --context"
        )
    try:
        said = json.loads(error.body or "{}").get("message") or error.reason
    except ValueError:
        said = error.reason
    hint = {
        401: "check the kubeconfig's credentials",
        403: "give the kubeconfig's user the rights to it (a Role in --namespace)",
        404: "check --namespace",
    }.get(error.status or 0, "check the Kubernetes options")
    return StackmagicError(f"{doing}: {error.status} {said}; {hint}")


def given(**fields: Any) -> dict[str, Any]:
    """The fields that have a value: Kubernetes takes an absent one for its default."""
    return {name: value for name, value in fields.items() if value}


def job_parts(job_id: str) -> tuple[str, str]:
    namespace, _, name = job_id.partition("/")
    return namespace, name

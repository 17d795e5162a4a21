"""What the FAKE Kubernetes API server (tests/fake_kubernetes.py) refuses, as a real one does.

A Job or CronJob body is checked field by field, as an API server asked with
``fieldValidation=Strict`` checks it: an unknown field is a 400, a bad value
(a name, a label, a quantity, a restart policy, a toleration, a pod failure
policy, a cron schedule) a 422 with the real ``Status`` body. Label selectors
are parsed as the API server parses the few forms this fake knows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

Answer = tuple[int, Any]
NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str) -> Answer:
    """An answer as the API server gives it when it does not give the object: a ``Status``."""
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 300 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def selector(text: str) -> list[Callable[[dict[str, str]], bool]]:
    """``k=v``, ``k==v``, ``k!=v``, ``k`` and ``!k`` requirements, as tests of labels."""
    return [_requirement(part.strip()) for part in text.split(",") if part.strip()]


def _requirement(text: str) -> Callable[[dict[str, str]], bool]:
    found = re.fullmatch(r"(!?)([\w./-]+)(?:\s*(==|=|!=)\s*([\w.-]*))?", text)
    if not found:
        raise ValueError(f"{text!r} (this fake knows =, ==, != and exists)")
    negated, key, operator, value = found.groups()

    def holds(labels: dict[str, str]) -> bool:
        if operator is None:
            return (key in labels) != bool(negated)
        return (labels.get(key) == value) != (operator == "!=")

    return holds


# -- what the API server refuses in a Job ----------------------------------------------------

_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_QUANTITY = re.compile(
    r"([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][-+]?[0-9]+)?"
)
_SCALE = {
    **dict(
        zip(
            ["", "n", "u", "m", "k", "M", "G", "T", "P", "E"],
            [1, 1e-9, 1e-6, 1e-3, 1e3, 1e6, 1e9, 1e12, 1e15, 1e18],
        )
    ),
    **{f"{unit}i": 2.0 ** (10 * (i + 1)) for i, unit in enumerate("KMGTPE")},
}
#: the fields this fake knows, by where they are; any other is an unknown field
_FIELDS = {
    "": {"apiVersion", "kind", "metadata", "spec"},
    "metadata": {"name", "namespace", "labels", "annotations"},
    "spec": {
        *"template backoffLimit activeDeadlineSeconds ttlSecondsAfterFinished".split(),
        "completions",
        "parallelism",
        "podFailurePolicy",
    },
    "spec.template": {"metadata", "spec"},
    "spec.template.metadata": {"labels", "annotations"},
    "spec.template.spec": {
        *"containers restartPolicy serviceAccountName nodeSelector".split(),
        "tolerations",
        "imagePullSecrets",
    },
    "container": {
        *"name image command args env envFrom resources imagePullPolicy workingDir".split()
    },
    "toleration": {"key", "operator", "value", "effect", "tolerationSeconds"},
}


def invalid_job(job: dict[str, Any]) -> Answer | None:
    """The API server's refusal of ``job``: 400 for an unknown field, 422 for a bad value."""
    name = str((job.get("metadata") or {}).get("name", ""))
    unknown = _unknown("", "", job) + _unknown("metadata", "metadata", job.get("metadata", {}))
    problems = _object_meta("metadata", job.get("metadata", {}))
    more_unknown, more_problems = job_spec_problems("spec", job.get("spec", {}))
    if unknown + more_unknown:
        return status(
            400, "BadRequest", f"strict decoding error: {', '.join(unknown + more_unknown)}"
        )
    if problems + more_problems:
        said = "; ".join(problems + more_problems)
        return status(422, "Invalid", f'Job.batch "{name}" is invalid: {said}')
    return None


def _object_meta(path: str, metadata: dict[str, Any]) -> list[str]:
    name = str(metadata.get("name", ""))
    problems = _labels(f"{path}.labels", metadata.get("labels", {}))
    if not NAME.fullmatch(name) or len(name) > 63:
        problems.append(f"{path}.name: Invalid value: {name!r}: a DNS-1123 label of at most 63")
    return problems


def job_spec_problems(path: str, spec: Any) -> tuple[list[str], list[str]]:
    """A Job's spec (or a CronJob's jobTemplate's): its unknown fields and its bad values."""
    unknown = _unknown("spec", path, spec)
    if not isinstance(spec, dict):
        return unknown, []
    template = spec.get("template", {})
    unknown += _unknown("spec.template", f"{path}.template", template)
    if isinstance(template, dict):
        unknown += _unknown(
            "spec.template.metadata", f"{path}.template.metadata", template.get("metadata", {})
        )
    if unknown:
        return unknown, []
    problems = _labels(
        f"{path}.template.metadata.labels", template.get("metadata", {}).get("labels", {})
    )
    least = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": 1,
        "ttlSecondsAfterFinished": 0,
        "completions": 1,
        "parallelism": 1,
    }
    for key, smallest in least.items():
        given = spec.get(key, smallest)
        if not isinstance(given, int) or isinstance(given, bool) or given < smallest:
            problems.append(
                f"{path}.{key}: Invalid value: {given!r}: must be an integer >= {smallest}"
            )
    pod = template.get("spec", {})
    problems += _pod_spec(f"{path}.template.spec", pod)
    if "podFailurePolicy" in spec:
        problems += _failure_policy(f"{path}.podFailurePolicy", spec["podFailurePolicy"], pod)
    return [], problems


def _failure_policy(path: str, policy: Any, pod: dict[str, Any]) -> list[str]:
    """Rules of ``onExitCodes`` or ``onPodConditions``, each with an action; Never pods only."""
    problems = []
    if pod.get("restartPolicy") != "Never":
        problems.append(f"{path}: Invalid value: only with restartPolicy Never")
    rules = policy.get("rules") if isinstance(policy, dict) and set(policy) == {"rules"} else None
    if not isinstance(rules, list):
        return [*problems, f"{path}.rules: Required value"]
    containers = {c.get("name") for c in pod.get("containers", [])}
    for i, rule in enumerate(rules):
        where = f"{path}.rules[{i}]"
        if rule.get("action") not in ("FailJob", "FailIndex", "Ignore", "Count"):
            problems.append(f"{where}.action: Unsupported value: {rule.get('action')!r}")
        kinds = {"onExitCodes", "onPodConditions"} & set(rule)
        if len(kinds) != 1 or set(rule) - {"action", *kinds}:
            problems.append(f"{where}: exactly one of onExitCodes and onPodConditions")
            continue
        codes = rule.get("onExitCodes")
        if codes is not None:
            if codes.get("operator") not in ("In", "NotIn") or not codes.get("values"):
                problems.append(f"{where}.onExitCodes: operator In or NotIn, and values")
            if codes.get("containerName", next(iter(containers), None)) not in containers:
                problems.append(f"{where}.onExitCodes.containerName: not a container of the pod")
        for condition in rule.get("onPodConditions") or []:
            if set(condition) - {"type", "status"} or condition.get("status", "True") not in (
                "True",
                "False",
                "Unknown",
            ):
                problems.append(f"{where}.onPodConditions: a type and a status")
    return problems


def _unknown(where: str, path: str, value: Any) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path or 'the body'}: expected an object"]
    return [
        f'unknown field "{path}.{key}"'.replace('".', '"')
        for key in value
        if key not in _FIELDS[where]
    ]


def _labels(path: str, labels: Any) -> list[str]:
    if not isinstance(labels, dict):
        return [f"{path}: expected an object of strings"]
    return [
        f"{path}: Invalid value: {key!r}={value!r}: not a valid label"
        for key, value in labels.items()
        if not (
            isinstance(value, str)
            and _LABEL_KEY.fullmatch(key)
            and _LABEL_VALUE.fullmatch(value)
            and len(value) <= 63
        )
    ]


def _amount(value: Any) -> float:
    """A quantity (``4``, ``500m``, ``16G``, ``8Gi``) as a number; ValueError if it is none."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    found = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
    if not found:
        raise ValueError(value)
    number, suffix = float(found.group(1)), found.group(3) or ""
    if re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
        return number * 10 ** int(suffix[1:])
    return number * _SCALE[suffix]


def _resources(path: str, resources: dict[str, Any]) -> list[str]:
    problems = [
        f"{path}: unknown field {key!r}" for key in resources if key not in ("requests", "limits")
    ]
    amounts: dict[str, dict[str, float]] = {"requests": {}, "limits": {}}
    for kind, found in amounts.items():
        for name, given in resources.get(kind, {}).items():
            try:
                found[name] = _amount(given)
            except ValueError:
                problems.append(
                    f"{path}.{kind}[{name}]: quantities must match the regular expression "
                    f"{_QUANTITY.pattern!r}, not {given!r}"
                )
    requests, limits = amounts["requests"], amounts["limits"]
    for name, amount in requests.items():
        if amount > limits.get(name, amount):
            problems.append(f"{path}.requests[{name}]: must be less than or equal to {name} limit")
    for name, amount in limits.items():  # an extended resource (a GPU): whole, requested as limited
        if "/" in name and (amount != int(amount) or requests.get(name, amount) != amount):
            problems.append(f"{path}.limits[{name}]: must be a whole number equal to its request")
    return problems


def _container(path: str, container: dict[str, Any]) -> list[str]:
    problems = _unknown("container", path, container)
    if not NAME.fullmatch(str(container.get("name", ""))):
        problems.append(f"{path}.name: Required value: a DNS-1123 label")
    if not isinstance(container.get("image"), str) or not container["image"].strip():
        problems.append(f"{path}.image: Required value")
    for key in ("command", "args"):
        if not all(isinstance(word, str) for word in container.get(key, [])):
            problems.append(f"{path}.{key}: expected a list of strings")
    for i, variable in enumerate(container.get("env", [])):
        if not _variable(variable):
            problems.append(f"{path}.env[{i}]: this fake knows a name and a value or a fieldRef")
    for i, source in enumerate(container.get("envFrom", [])):
        if set(source) != {"secretRef"} or not NAME.fullmatch(str(source["secretRef"].get("name"))):
            problems.append(f"{path}.envFrom[{i}]: this fake knows a secretRef with a name")
    if container.get("imagePullPolicy", "IfNotPresent") not in ("Always", "Never", "IfNotPresent"):
        problems.append(f"{path}.imagePullPolicy: Unsupported value")
    return problems + _resources(f"{path}.resources", container.get("resources", {}))


#: what the downward API gives a container's variable: the pod's own fields
FIELD_PATH = re.compile(r"metadata\.(name|namespace|uid)|metadata\.labels\['([^']+)'\]")


def _variable(variable: dict[str, Any]) -> bool:
    if set(variable) == {"name", "value"} or set(variable) == {"name"}:
        return isinstance(variable.get("value", ""), str)
    source = variable.get("valueFrom")
    return (
        set(variable) == {"name", "valueFrom"}
        and set(source) == {"fieldRef"}
        and set(source["fieldRef"]) <= {"fieldPath", "apiVersion"}
        and bool(FIELD_PATH.fullmatch(str(source["fieldRef"].get("fieldPath"))))
    )


def _pod_spec(path: str, spec: dict[str, Any]) -> list[str]:
    problems = _unknown("spec.template.spec", path, spec)
    if spec.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(f'{path}.restartPolicy: Required value: valid values: "OnFailure", "Never"')
    containers = spec.get("containers")
    if not isinstance(containers, list) or len(containers) != 1:
        return [*problems, f"{path}.containers: this fake runs exactly one container"]
    problems += _container(f"{path}.containers[0]", containers[0])
    problems += _labels(f"{path}.nodeSelector", spec.get("nodeSelector", {}))
    if not NAME.fullmatch(spec.get("serviceAccountName", "default")):
        problems.append(f"{path}.serviceAccountName: Invalid value")
    for i, toleration in enumerate(spec.get("tolerations", [])):
        where = f"{path}.tolerations[{i}]"
        problems += _unknown("toleration", where, toleration)
        if toleration.get("operator", "Equal") not in ("Equal", "Exists"):
            problems.append(f"{where}.operator: Unsupported value")
        if toleration.get("operator") == "Exists" and toleration.get("value"):
            problems.append(
                f"{where}.operator: Invalid value: value must be empty when `operator` is 'Exists'"
            )
        if toleration.get("effect", "") not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            problems.append(f"{where}.effect: Unsupported value")
        if not _LABEL_KEY.fullmatch(str(toleration.get("key", ""))):
            problems.append(f"{where}.key: Invalid value")
    for i, secret in enumerate(spec.get("imagePullSecrets", [])):
        if set(secret) != {"name"} or not NAME.fullmatch(str(secret["name"])):
            problems.append(f"{path}.imagePullSecrets[{i}]: a name")
    return problems

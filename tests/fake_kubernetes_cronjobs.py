"""The FAKE Kubernetes API server's batch/v1 CronJobs, and a test's way to fire one.

A CronJob is checked as strictly as a Job (its ``jobTemplate.spec`` is a Job's
spec): a schedule of five cron fields, a concurrency policy, history limits,
a name of at most 52 characters (the controller adds 11 to its Jobs'). No
clock runs here: :meth:`CronJobs.fire` does what the CronJob controller does
when the schedule comes round, making a Job from the template, owned by the
CronJob and named after it and the minute.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from fake_kubernetes_manifests import NAME, Answer, job_spec_problems, now, status

_FIELD = r"(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?"
_CRON = re.compile(rf"{_FIELD}(,{_FIELD})*")
_SPEC = {
    "schedule",
    "timeZone",
    "concurrencyPolicy",
    "suspend",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "startingDeadlineSeconds",
    "jobTemplate",
}


class CronJobs:
    """CronJob routes and controller, mixed into the fake API server."""

    cronjobs: dict[tuple[str, str], dict[str, Any]]
    namespaces: set[str]
    jobs: dict[tuple[str, str], dict[str, Any]]
    lock: Any

    def _create_job(self, query: Any, body: bytes, namespace: str) -> Answer:
        raise NotImplementedError

    def _deleted(self, namespace: str, name: str, policy: str) -> None:
        raise NotImplementedError

    def cronjob_routes(self, within: str) -> list[tuple[str, str, Callable[..., Answer]]]:
        one = rf"/apis/batch/v1{within}/cronjobs/(?P<name>[^/]+)"
        return [
            ("POST", rf"/apis/batch/v1{within}/cronjobs", self._create_cronjob),
            ("GET", one, self._get_cronjob),
            ("DELETE", one, self._delete_cronjob),
        ]

    def fire(self, namespace: str, name: str) -> str:
        """The schedule came round: the CronJob's Job is made; its name is returned."""
        with self.lock:
            cronjob = self.cronjobs[namespace, name]
            template = json.loads(json.dumps(cronjob["spec"]["jobTemplate"]))
            job_name = f"{name}-{int(time.time() // 60)}"
            metadata = template.get("metadata", {})
            owner = {"apiVersion": "batch/v1", "kind": "CronJob", "controller": True}
            manifest = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": job_name,
                    "namespace": namespace,
                    "labels": metadata.get("labels", {}),
                },
                "spec": template["spec"],
            }
            code, answer = self._create_job({}, json.dumps(manifest).encode(), namespace)
            assert code == 201, answer
            self.jobs[namespace, job_name]["metadata"]["ownerReferences"] = [
                {**owner, "name": name, "uid": cronjob["metadata"]["uid"]}
            ]
            cronjob["status"] = {"lastScheduleTime": now(), "active": [{"name": job_name}]}
            return job_name

    def _create_cronjob(self, query: Any, body: bytes, namespace: str) -> Answer:
        manifest = json.loads(body)
        name = str((manifest.get("metadata") or {}).get("name", ""))
        if refused := invalid_cronjob(manifest):
            return refused
        if manifest["metadata"].get("namespace", namespace) != namespace:
            return status(400, "BadRequest", "the namespace of the provided object does not match")
        if namespace not in self.namespaces:
            return status(404, "NotFound", f'namespaces "{namespace}" not found')
        if (namespace, name) in self.cronjobs:
            return status(409, "AlreadyExists", f'cronjobs.batch "{name}" already exists')
        manifest["metadata"].update(
            namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now()
        )
        manifest["spec"].setdefault("suspend", False)
        manifest["status"] = {}
        self.cronjobs[namespace, name] = manifest
        return 201, manifest

    def _get_cronjob(self, query: Any, body: bytes, namespace: str, name: str) -> Answer:
        if (namespace, name) not in self.cronjobs:
            return status(404, "NotFound", f'cronjobs.batch "{name}" not found')
        return 200, self.cronjobs[namespace, name]

    def _delete_cronjob(
        self, query: Mapping[str, list[str]], body: bytes, namespace: str, name: str
    ) -> Answer:
        """Gone, and its Jobs with it unless orphaned (a CronJob's default is Background)."""
        policy = (query.get("propagationPolicy") or [""])[0] or (
            json.loads(body or b"{}").get("propagationPolicy") or "Background"
        )
        if policy not in ("Orphan", "Background", "Foreground"):
            return status(400, "BadRequest", f'propagationPolicy "{policy}" is not supported')
        cronjob = self.cronjobs.pop((namespace, name), None)
        if cronjob is None:
            return status(404, "NotFound", f'cronjobs.batch "{name}" not found')
        if policy != "Orphan":
            for (ns, job_name), job in list(self.jobs.items()):
                owners = job["metadata"].get("ownerReferences", [])
                if ns == namespace and any(o["uid"] == cronjob["metadata"]["uid"] for o in owners):
                    self._deleted(ns, job_name, policy)
        return status(200, "", f'cronjobs.batch "{name}" deleted')


def invalid_cronjob(cronjob: dict[str, Any]) -> Answer | None:
    """The API server's refusal of ``cronjob``: 400 for an unknown field, 422 for a bad value."""
    if cronjob.get("apiVersion", "batch/v1") != "batch/v1" or cronjob.get("kind") not in (
        None,
        "CronJob",
    ):
        return status(400, "BadRequest", "the data is not a batch/v1 CronJob")
    metadata, spec = cronjob.get("metadata") or {}, cronjob.get("spec") or {}
    name = str(metadata.get("name", ""))
    unknown = [f'unknown field "{key}"' for key in cronjob if key not in _TOP]
    unknown += [f'unknown field "metadata.{key}"' for key in metadata if key not in _META]
    unknown += [f'unknown field "spec.{key}"' for key in spec if key not in _SPEC]
    template = spec.get("jobTemplate") or {}
    unknown += [
        f'unknown field "spec.jobTemplate.{key}"'
        for key in template
        if key not in ("metadata", "spec")
    ]
    more_unknown, problems = job_spec_problems("spec.jobTemplate.spec", template.get("spec", {}))
    if unknown + more_unknown:
        return status(
            400, "BadRequest", f"strict decoding error: {', '.join(unknown + more_unknown)}"
        )
    if not NAME.fullmatch(name) or len(name) > 52:
        problems.append(f"metadata.name: Invalid value: {name!r}: a DNS-1123 label of at most 52")
    fields = str(spec.get("schedule", "")).split()
    if len(fields) != 5 or not all(_CRON.fullmatch(f) for f in fields):
        problems.append(f"spec.schedule: Invalid value: {spec.get('schedule')!r}")
    if spec.get("concurrencyPolicy", "Allow") not in ("Allow", "Forbid", "Replace"):
        problems.append("spec.concurrencyPolicy: Unsupported value")
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        given = spec.get(key, 0)
        if not isinstance(given, int) or isinstance(given, bool) or given < 0:
            problems.append(f"spec.{key}: Invalid value: must be an integer >= 0")
    if problems:
        return status(422, "Invalid", f'CronJob.batch "{name}" is invalid: {"; ".join(problems)}')
    return None


_TOP = {"apiVersion", "kind", "metadata", "spec"}
_META = {"name", "namespace", "labels", "annotations"}

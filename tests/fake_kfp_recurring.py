"""The recurring runs of the FAKE Kubeflow Pipelines API server (fake_kfp.FakeKfp).

As strict as KFP v2beta1's API server on what a recurring run is made of: a
name; a cron trigger of six fields (seconds first, robfig/cron's; a five-field
one KFP would read with seconds first, so "0 3 * * *" would run hourly: refused
here); a pipeline version that exists, in that pipeline, in an experiment
that exists; runtime parameters that are the pipeline's inputs, of their
types; a mode of ENABLE or DISABLE; max_concurrency 1 to 10. Listed (by
experiment, by name), read and deleted as KFP does. No scheduler runs here:
a test fires a recurring run with :meth:`RecurringRuns.fire`, which starts a
run as KFP's scheduled workflow would, run by kfp.local.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import yaml

#: A robfig/cron field: numbers, names, ranges, steps, lists, * and ?
_CRON_FIELD = re.compile(
    r"(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*"
)
#: A KFP input's parameterType and the JSON values it takes
_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "NUMBER_DOUBLE": (int, float),
    "NUMBER_INTEGER": (int,),
    "BOOLEAN": (bool,),
}


@dataclass
class RecurringRuns:
    """The recurring-run endpoints; mixed into FakeKfp, whose pipelines and runs they use."""

    recurring_runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def recurring_routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", r"/recurringruns", self._create_recurring_run),
            ("GET", r"/recurringruns", self._list_recurring_runs),
            ("GET", r"/recurringruns/(?P<recurring_run_id>[^/:]+)", self._get_recurring_run),
            ("DELETE", r"/recurringruns/(?P<recurring_run_id>[^/:]+)", self._delete_recurring_run),
        ]

    def fire(self, recurring_run_id: str) -> dict[str, Any]:
        """What KFP's scheduler does when the cron comes: start a run of the recurring run."""
        recurring = self.recurring_runs[recurring_run_id]
        if recurring["mode"] != "ENABLE":
            raise AssertionError(f"recurring run {recurring_run_id} is disabled: it fires never")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        run = {
            "run_id": str(uuid.uuid4()),
            "display_name": f"{recurring['display_name']}-{stamp}",
            "experiment_id": recurring["experiment_id"],
            "recurring_run_id": recurring_run_id,
            "pipeline_version_reference": recurring["pipeline_version_reference"],
            "runtime_config": recurring["runtime_config"],
            "service_account": recurring.get("service_account"),
            "state": "RUNNING",
        }
        version = self.versions[run["pipeline_version_reference"]["pipeline_version_id"]]
        self.runs[run["run_id"]] = run
        self._start(run, version)
        return run

    def _create_recurring_run(self, body: bytes, **_: Any) -> tuple[int, dict[str, Any]]:
        from fake_kfp import _refused

        given = _json(body)
        problem = self._recurring_run_problem(given)
        if problem is not None:
            status, message = problem
            return _refused(status, f"Failed to create a recurring run: {message}")
        now = datetime.now(timezone.utc).isoformat()
        recurring = {
            "recurring_run_id": str(uuid.uuid4()),
            "display_name": given["display_name"],
            "description": given.get("description", ""),
            "experiment_id": given["experiment_id"],
            "pipeline_version_reference": given["pipeline_version_reference"],
            "runtime_config": given.get("runtime_config") or {},
            "service_account": given.get("service_account"),
            "trigger": given["trigger"],
            "mode": given["mode"],
            "max_concurrency": str(given["max_concurrency"]),
            "no_catchup": bool(given.get("no_catchup", False)),
            "status": "ENABLED" if given["mode"] == "ENABLE" else "DISABLED",
            "created_at": now,
            "updated_at": now,
        }
        self.recurring_runs[recurring["recurring_run_id"]] = recurring
        return 200, recurring

    def _recurring_run_problem(self, given: Mapping[str, Any]) -> tuple[int, str] | None:
        """Why KFP refuses the recurring run (a status and a message), or None."""
        if not given.get("display_name"):
            return 400, "recurring run name is empty; give a display_name"
        trigger = given.get("trigger") or {}
        if set(trigger) != {"cron_schedule"}:
            return 400, f"this server takes a cron_schedule trigger only, not {sorted(trigger)}"
        cron = str((trigger["cron_schedule"] or {}).get("cron", ""))
        fields = cron.split()
        if len(fields) != 6 or not all(_CRON_FIELD.fullmatch(part) for part in fields):
            return 400, (
                f"Schedule cron is not a supported format: {cron!r} (six fields, seconds first: "
                "https://godoc.org/github.com/robfig/cron)"
            )
        if given.get("mode") not in ("ENABLE", "DISABLE"):
            return 400, f"mode must be ENABLE or DISABLE, not {given.get('mode')!r}"
        try:
            concurrency = int(given.get("max_concurrency") or 0)
        except (TypeError, ValueError):
            return 400, f"max_concurrency {given.get('max_concurrency')!r} is no int64"
        if not 1 <= concurrency <= 10:
            return 400, (
                f"The max concurrency of the job is out of range. Support 1-10. Received {concurrency}."
            )
        if "no_catchup" in given and not isinstance(given["no_catchup"], bool):
            return 400, f"no_catchup must be true or false, not {given['no_catchup']!r}"
        if given.get("experiment_id") not in self.experiments:
            return 404, f"Experiment {given.get('experiment_id')} not found"
        reference = given.get("pipeline_version_reference") or {}
        pipeline_id, version_id = reference.get("pipeline_id"), reference.get("pipeline_version_id")
        if not (pipeline_id and version_id):
            return 400, "pipeline_version_reference needs a pipeline_id and a pipeline_version_id"
        version = self.versions.get(version_id)
        if pipeline_id not in self.pipelines:
            return 404, f"Pipeline {pipeline_id} not found"
        if version is None:
            return 404, f"Pipeline version {version_id} not found"
        if version["pipeline_id"] != pipeline_id:
            return 400, f"pipeline version {version_id} does not belong to pipeline {pipeline_id}"
        parameters = (given.get("runtime_config") or {}).get("parameters") or {}
        return _parameters_problem(version["package"], parameters)

    def _list_recurring_runs(
        self, query: Mapping[str, list[str]], **_: Any
    ) -> tuple[int, dict[str, Any]]:
        from fake_kfp import _BadFilter, _filter, _refused

        experiment = query.get("experiment_id", [""])[0]
        try:
            keep = _filter("recurring_runs", query)
        except _BadFilter as error:
            return _refused(400, f"Failed to list recurring runs: Invalid input error: {error}")
        found = [
            recurring
            for recurring in self.recurring_runs.values()
            if (not experiment or recurring["experiment_id"] == experiment) and keep(recurring)
        ]
        return 200, ({"recurringRuns": found, "total_size": len(found)} if found else {})

    def _get_recurring_run(self, recurring_run_id: str, **_: Any) -> tuple[int, dict[str, Any]]:
        from fake_kfp import _refused

        if recurring_run_id not in self.recurring_runs:
            return _refused(404, f"Failed to get a recurring run: {recurring_run_id} not found")
        return 200, self.recurring_runs[recurring_run_id]

    def _delete_recurring_run(self, recurring_run_id: str, **_: Any) -> tuple[int, dict[str, Any]]:
        from fake_kfp import _refused

        if self.recurring_runs.pop(recurring_run_id, None) is None:
            return _refused(404, f"Failed to delete a recurring run: {recurring_run_id} not found")
        return 200, {}


def _parameters_problem(package: bytes, parameters: Mapping[str, Any]) -> tuple[int, str] | None:
    """Parameters that are no input of the pipeline, or not of its type: KFP refuses them."""
    spec = next(yaml.safe_load_all(package))
    inputs = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    for name, value in parameters.items():
        if name not in inputs:
            return 400, f"parameter {name!r} is no input of the pipeline ({', '.join(inputs)})"
        kind = inputs[name].get("parameterType", "STRING")
        allowed = _TYPES.get(kind, (object,))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            return 400, f"parameter {name!r} takes {kind}, not {value!r}"
    return None


def _json(body: bytes) -> dict[str, Any]:
    import json

    return json.loads(body or b"{}")

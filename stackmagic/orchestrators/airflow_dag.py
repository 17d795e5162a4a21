"""A bundle as an Airflow DAG file: Python source, written out without a template engine.

Every value in the file is the ``repr`` of a JSON value, so the file says
exactly what it holds and nothing in a notebook can turn into code. Each
step is one task running ``python -m stackmagic.runtime task`` on its step;
the task's run id and parameter values are Jinja that Airflow renders when
the task starts, each through ``tojson`` (which writes no ``'``: a value
stays inside its shell word). The file imports from Airflow 3's task SDK
and falls back to Airflow 2.10's modules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..runtime.task_word import SECRETS_JSON, TaskWord

if TYPE_CHECKING:
    from ..flavors.orchestrators import AirflowOrchestrator
    from ..notebook.exporter import Bundle

#: The conf key of a DAG run that ``pipeline run`` triggers: the run it recorded.
RUN_CONF = "stackmagic_run"
RUN_TEMPLATE = "{{ (dag_run.conf or {}).get(" + repr(RUN_CONF) + ", '') | tojson }}"
RUN_KEY_TEMPLATE = "{{ [dag.dag_id, run_id] | tojson }}"
PARAMETERS_TEMPLATE = "{{ params | tojson }}"
_TEMPLATES = {
    "--run": RUN_TEMPLATE,
    "--run-key": RUN_KEY_TEMPLATE,
    "--parameters": PARAMETERS_TEMPLATE,
}
#: A number parameter is a "number" whether it is written 3 or 3.0.
_JSON_SCHEMA_TYPES = {bool: "boolean", int: "number", float: "number", str: "string"}
_JSON_SCHEMA_TYPES.update({list: "array", dict: "object"})

_IMPORTS = {
    "bash": """\
try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2.10
    from airflow.operators.bash import BashOperator
""",
    "kubernetes": """\
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s
""",
    "docker": "from airflow.providers.docker.operators.docker import DockerOperator\n",
}


@dataclass(frozen=True)
class DagPlan:
    """What one DAG file is: for ad-hoc runs (no cron) or for a schedule."""

    dag_id: str
    parameters: Mapping[str, Any]
    cron: str | None = None
    schedule: str | None = None
    start: datetime | None = None


def dag_id_for(name: str) -> str:
    """Airflow's DAG ids are letters, digits, ``_``, ``-`` and ``.``."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("_.-")
    return cleaned[:200] or "pipeline"


@dataclass(frozen=True)
class DagFile:
    dag_id: str
    source: str
    #: a hash of the file, which the DAG's description ends with: how the API tells it parsed
    version: str


def dag_file(
    bundle: Bundle,
    bundle_uri: str,
    stores: Mapping[str, Any],
    config: AirflowOrchestrator,
    plan: DagPlan,
) -> DagFile:
    """The DAG file for ``plan``: a bundle kept at ``bundle_uri``, run on ``stores``."""
    options = {"schedule": plan.schedule} if plan.schedule else {}
    word = TaskWord(bundle_uri=bundle_uri, stores=dict(stores), options=options).encode()
    body = _body(bundle, config, plan, word)
    version = hashlib.sha256(body.encode()).hexdigest()[:12]
    what = f"stackmagic pipeline {bundle.pipeline} from {bundle.manifest['notebook']}"
    which = f" (bundle {bundle.hash[:12]}, file {version})"
    described = f"(\n        {what!r}\n        {which!r}\n    )"
    return DagFile(plan.dag_id, body.replace(_DESCRIPTION_MARK, described, 1), version)


def file_version(description: str | None) -> str:
    """The file hash a parsed DAG's description names, to tell a new file's DAG from the old."""
    found = re.search(r"file ([0-9a-f]{12})\)$", description or "")
    return found.group(1) if found else ""


_DESCRIPTION_MARK = "__DESCRIPTION__"


def _body(bundle: Bundle, config: AirflowOrchestrator, plan: DagPlan, word: str) -> str:
    secrets = _secret_lines(config)
    lines = [
        f"# stackmagic pipeline {bundle.pipeline!r} as an Airflow DAG: one task per step.",
        "#",
        "# Written by `stackmagic pipeline export --to airflow` (or `pipeline run` and `pipeline",
        "# schedule` on an airflow stack): export again rather than edit. Each task runs",
        "# `python -m stackmagic.runtime task` on its step of the bundle kept in the artifact",
        "# store and records it in the stack's metadata store. TASK names the bundle, the",
        "# stores and the run's options; it holds no secret.",
        *secrets["doc"],
        "",
        "import datetime",
        *(["import shlex"] if config.operator == "bash" else []),
        "",
        "try:  # Airflow 3",
        "    from airflow.sdk import DAG, Param",
        "except ImportError:  # Airflow 2.10",
        "    from airflow import DAG",
        "    from airflow.models.param import Param",
        _IMPORTS[config.operator].rstrip("\n"),
        "",
        "#: The bundle, the stores (secrets as environment references) and the run's options.",
        "TASK = (",
        *(f"    {word[i : i + 76]!r}" for i in range(0, len(word), 76)),
        ")",
        f"RUNTIME = {_runtime(config)!r}",
        "#: Rendered by Airflow as each task starts: the run (recorded by `pipeline run`, or",
        "#: derived from Airflow's run id) and the parameter values.",
        "TEMPLATES = {",
        *(f"    {flag!r}: {template!r}," for flag, template in _TEMPLATES.items()),
        "}",
        *secrets["code"],
        "",
        "",
        _task_function(config),
        "",
        "",
        "with DAG(",
        f"    dag_id={plan.dag_id!r},",
        f"    description={_DESCRIPTION_MARK},",
        f"    schedule={plan.cron!r},",
        f"    start_date={_start(plan.start)},",
        "    catchup=False,",
        "    max_active_runs=16,",
        "    tags=['stackmagic'],",
        "    params={",
        *(
            f"        {name!r}: {_param(value)},"
            for name, value in plan.parameters.items()
            if name in bundle.parameters
        ),
        "    },",
        ") as dag:",
        "    tasks = {",
        *(
            f"        {name!r}: task({name!r}, {_settings(step.settings, config)!r}),"
            for name, step in bundle.steps.items()
        ),
        "    }",
        *(
            f"    {_upstream(step.upstream)} >> tasks[{name!r}]"
            for name, step in bundle.steps.items()
            if step.upstream
        ),
    ]
    return "\n".join(lines) + "\n"


def _upstream(names: list[str]) -> str:
    tasks = [f"tasks[{name!r}]" for name in names]
    return tasks[0] if len(tasks) == 1 else f"[{', '.join(tasks)}]"


def _runtime(config: AirflowOrchestrator) -> list[str]:
    python = config.python if config.operator == "bash" else "python"
    return [python, "-m", "stackmagic.runtime", "task"]


def _task_function(config: AirflowOrchestrator) -> str:
    head = (
        "def task(step, settings):\n"
        '    """The task that runs one step; settings: its retries, image and resources."""\n'
        "    words = [*RUNTIME, TASK, '--step', step]\n"
    )
    if config.operator == "bash":
        return head + (
            "    # each template renders as JSON, which has no ': quoted, it stays one word\n"
            "    rendered = [f\"{flag} '{template}'\" for flag, template in TEMPLATES.items()]\n"
            "    return BashOperator(\n"
            "        task_id=step,\n"
            "        bash_command=' '.join([*map(shlex.quote, words), *rendered]),\n"
            "        env=SECRET_ENV,\n"
            "        append_env=True,  # and the worker's environment\n"
            "        retries=settings['retries'],\n"
            "    )"
        )
    head += "    words += [word for pair in TEMPLATES.items() for word in pair]\n"
    if config.operator == "docker":
        return head + (
            "    return DockerOperator(\n"
            "        task_id=step,\n"
            "        image=settings['image'],\n"
            "        command=words,\n"
            "        environment=SECRET_ENV,\n"
            "        auto_remove='success',\n"
            "        retries=settings['retries'],\n"
            "    )"
        )
    return head + (
        "    resources = settings['resources'] or None\n"
        "    return KubernetesPodOperator(\n"
        "        task_id=step,\n"
        "        name='stackmagic-' + step.lower().replace('_', '-'),\n"
        "        namespace=NAMESPACE,\n"
        "        image=settings['image'],\n"
        "        cmds=words[:4],\n"
        "        arguments=words[4:],\n"
        "        container_resources=k8s.V1ResourceRequirements(requests=resources, limits=resources),\n"
        "        env_from=SECRET_ENV_FROM,\n"
        "        get_logs=True,\n"
        "        on_finish_action='delete_pod',\n"
        "        retries=settings['retries'],\n"
        "    )"
    )


def _secret_lines(config: AirflowOrchestrator) -> dict[str, list[str]]:
    """Where the stores' secrets come from, by reference: the file never holds one."""
    name = config.store_secret
    if config.operator == "kubernetes":
        doc = (
            [f"Secrets: the Kubernetes secret {name!r} gives each pod its STACKMAGIC_... keys."]
            if name
            else ["Secrets: none (the stack's stores have no secret options)."]
        )
        code = [
            f"NAMESPACE = {config.namespace or None!r}",
            "SECRET_ENV_FROM = "
            + (
                f"[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name={name!r}))]"
                if name
                else "None"
            ),
        ]
        return {"doc": ["#", *(f"# {line}" for line in doc)], "code": code}
    if name:
        doc = [
            f"Secrets: the Airflow Variable {name!r} holds the stores' secret options as JSON",
            '({"STACKMAGIC_METADATA_STORE_PASSWORD": ...}); the task reads it through its',
            f"environment ({SECRETS_JSON}), rendered when it starts.",
        ]
        template = "{{ var.value.get(" + repr(name) + ") }}"
        code = [f"SECRET_ENV = {{{SECRETS_JSON!r}: {template!r}}}"]
    else:
        doc = ["Secrets: the STACKMAGIC_... variables of the worker's environment."]
        code = ["SECRET_ENV = {}"]
    return {"doc": ["#", *(f"# {line}" for line in doc)], "code": code}


def _settings(settings: Mapping[str, Any], config: AirflowOrchestrator) -> dict[str, Any]:
    """``%%step --retries/--image/--cpu/--memory/--gpu`` as what the task function reads.

    A step a step operator runs asks its job for resources: its task only submits
    the job and waits, in the pipeline's image.
    """
    chosen: dict[str, Any] = {"retries": int(settings.get("retries") or 0)}
    if config.operator == "bash":
        return chosen
    own = not settings.get("operator")
    chosen["image"] = (own and settings.get("image")) or config.image
    if config.operator == "kubernetes":
        resources = {}
        if own and settings.get("cpu"):
            resources["cpu"] = str(settings["cpu"])
        if own and settings.get("memory"):
            resources["memory"] = str(settings["memory"])
        if own and settings.get("gpu"):
            resources[config.gpu_resource] = str(settings["gpu"])
        chosen["resources"] = resources
    return chosen


def _param(value: Any) -> str:
    kind = _JSON_SCHEMA_TYPES.get(type(value))
    return f"Param({value!r}, type={kind!r})" if kind else f"Param({value!r})"


def _start(start: datetime | None) -> str:
    """A fixed start (Airflow wants one with a cron), in UTC, to the minute."""
    if start is None:
        return "datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)"
    return (
        f"datetime.datetime({start.year}, {start.month}, {start.day}, {start.hour}, "
        f"{start.minute}, tzinfo=datetime.timezone.utc)"
    )

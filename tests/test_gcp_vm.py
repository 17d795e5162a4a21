"""The gcp-vm orchestrator: the real google-cloud-compute client against a FAKE Compute Engine.

tests/fake_gce.py plays Compute Engine and Secret Manager, as strict as they
are on what they are sent. The startup script an instance gets is run on this
machine as the VM would run it (tests/vm_sandbox.py); preemption is the fake
taking the VM back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from fake_gce import ZONE_EXHAUSTED, FakeGce, OperationError
from fake_http import requests_text
from services import DB_CANARY, S3_CANARY, Database
from team import bucket_options, register_team_stack, secret_sightings, team_notebook
from test_vm import run_id_of
from vm_sandbox import GCP_PROJECT, run_startup_script

GCP_SECRET = "team-stores"


@pytest.fixture
def gcp_stack(
    terminal: Callable[..., Result],
    team_database: Database,
    gce: FakeGce,
    request: pytest.FixtureRequest,
) -> Callable[..., Any]:
    def make(*flags: str) -> Any:
        _, bucket_flags, store = bucket_options("s3", request)
        gce.secrets[f"projects/{GCP_PROJECT}/secrets/{GCP_SECRET}"] = json.dumps(
            {
                "STACKMAGIC_METADATA_STORE_PASSWORD": DB_CANARY,
                "STACKMAGIC_ARTIFACT_STORE_SECRET_ACCESS_KEY": S3_CANARY,
            }
        )
        register_team_stack(
            terminal,
            team_database,
            bucket_flags,
            orchestrator=[
                "--type=gcp-vm",
                f"--project={GCP_PROJECT}",
                "--zone=europe-west4-a",
                "--machine-type=n2-standard-8",
                "--preemptible=true",
                f"--api-endpoint={gce.url}",
                "--boot-image=projects/debian-cloud/global/images/family/debian-12",
                "--service-account=runner@demo-project.iam.gserviceaccount.com",
                "--labels=team=ml",
                f"--store-secret={GCP_SECRET}",
                *flags,
            ],
        )
        return store

    return make


def test_gcp_vm_inserts_a_preemptible_vm_whose_startup_script_runs_the_pipeline_and_deletes_it(
    gcp_stack: Callable[..., Any],
    gce: FakeGce,
    project: Path,
    terminal: Callable[..., Result],
    team_database: Database,
    tmp_path: Path,
) -> None:
    store = gcp_stack()
    team_notebook(project)
    launched = terminal("pipeline", "run", "team.ipynb", "--json")
    run_id = run_id_of(launched)

    [(name, instance)] = gce.instances.items()
    assert name == f"stackmagic-{run_id}-1"
    assert instance["machineType"] == "zones/europe-west4-a/machineTypes/n2-standard-8"
    assert instance["scheduling"]["preemptible"] is True
    assert instance["scheduling"]["provisioningModel"] == "SPOT"
    assert instance["labels"] == {"team": "ml", "stackmagic-run": run_id, "stackmagic-try": "1"}
    assert instance["serviceAccounts"][0]["email"] == "runner@demo-project.iam.gserviceaccount.com"
    [script] = [i["value"] for i in instance["metadata"]["items"] if i["key"] == "startup-script"]
    inserts = [r for r in gce.requests if r.method == "POST" and r.path.endswith("/instances")]
    assert len(inserts) == 1 and inserts[0].headers["authorization"].startswith("Bearer ")
    described = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert described["orchestrator_run_id"] == name and described["status"] == "running"

    vm = run_startup_script(script, tmp_path / "vm")
    assert vm.returncode == 0, vm.stdout[-3000:] + vm.stderr[-3000:]
    assert gce.deleted == [name], "the VM deleted itself"
    finished = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert finished["status"] == "completed", finished
    assert "Compute Engine VM " + name in terminal("pipeline", "logs", run_id).out

    assert DB_CANARY not in requests_text(gce.requests) and S3_CANARY not in requests_text(
        gce.requests
    ), "no secret in any request to Google Cloud"
    outputs = [launched, Result(vm.returncode, vm.stdout, vm.stderr)]
    assert secret_sightings([DB_CANARY, S3_CANARY], project, store, team_database, outputs) == []


def test_a_dry_run_shows_the_launch_and_starts_records_and_stores_nothing(
    gcp_stack: Callable[..., Any],
    gce: FakeGce,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    store = gcp_stack()
    team_notebook(project)
    shown = terminal("pipeline", "run", "team.ipynb", "--dry-run")
    assert shown.code == 0, shown.err
    assert "Dry run: gcp-vm would start this VM" in shown.out
    assert '"provisioningModel": "SPOT"' in shown.out and "#!/bin/bash" in shown.out
    assert "python3 -m stackmagic.runtime vm" in shown.out
    assert DB_CANARY not in shown.out + shown.err and S3_CANARY not in shown.out + shown.err
    as_json = json.loads(terminal("pipeline", "run", "team.ipynb", "--dry-run", "--json").out)
    assert as_json["request"]["labels"]["team"] == "ml"
    assert gce.requests == [], "nothing asked of Google Cloud"
    assert json.loads(terminal("pipeline", "runs", "--json").out) == [], "no run recorded"
    assert store.find(store.root) == [], "no bundle stored"

    assert (
        terminal(
            "orchestrator",
            "update",
            "kf",
            "--boot-image=projects/cos-cloud/global/images/family/cos-stable",
            "--image=registry.example/team:1",
        ).code
        == 0
    )
    in_docker = terminal("pipeline", "run", "team.ipynb", "--dry-run").out
    assert "docker run --rm --network=host registry.example/team:1 python3 -m" in in_docker


@pytest.mark.parametrize(
    "refusal, said",
    [
        (
            (
                403,
                "Required 'compute.instances.create' permission for "
                f"'projects/{GCP_PROJECT}/zones/europe-west4-a/instances/x'",
            ),
            "compute.instances.create' permission",
        ),
        (
            ZONE_EXHAUSTED,
            "(503: The zone 'projects/demo-project/zones/europe-west4-a' does not have "
            "enough resources available to fulfill the request. Try a different zone",
        ),
    ],
    ids=["refused at once", "operation ends with an error"],
)
def test_a_refused_insert_is_one_line_and_a_failed_run(
    refusal: tuple[int, str] | OperationError,
    said: str,
    gcp_stack: Callable[..., Any],
    gce: FakeGce,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    gcp_stack()
    team_notebook(project)
    if isinstance(refusal, OperationError):
        gce.fail_insert = refusal
    else:
        gce.refuse_insert = refusal
    refused = terminal("pipeline", "run", "team.ipynb", "--progress", "none")
    assert refused.code == 2, refused.err
    assert len(refused.err.strip().splitlines()) == 1, refused.err
    assert "Compute Engine refused to start the VM stackmagic-" in refused.err
    assert said in refused.err
    assert gce.instances == {}
    [run] = json.loads(terminal("pipeline", "runs", "--json").out)
    assert run["status"] == "failed" and said in run["error"]


@pytest.mark.parametrize("taken_back", ["preempt", "stop"])
def test_a_gcp_vm_that_ends_before_its_run_leaves_a_preempted_run(
    taken_back: str,
    gcp_stack: Callable[..., Any],
    gce: FakeGce,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    """Preempted (a Spot VM is deleted), or stopped from outside (TERMINATED): the run is lost."""
    gcp_stack()
    team_notebook(project)
    run_id = run_id_of(terminal("pipeline", "run", "team.ipynb", "--json"))
    name = f"stackmagic-{run_id}-1"
    running = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert running["status"] == "running", "a run whose VM still runs goes on"

    getattr(gce, taken_back)(name)
    assert (name in gce.instances) == (taken_back == "stop")
    described = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert described["status"] == "preempted", described
    assert described["error"] == f"preempted: the VM {name} ended before the run did"
    assert {s["status"] for s in described["steps"]} == {"skipped"}, "no step ran"
    listed = terminal("pipeline", "runs")
    assert "preempted" in listed.out, listed.out


def compute_engine(gce: FakeGce, **options: Any) -> Any:
    """The gcp-vm orchestrator's Compute Engine, as the team stack's options make it."""
    from stackmagic.flavors.vm_orchestrators import GCPVMOrchestrator
    from stackmagic.orchestrators.gcp_vm import ComputeEngine

    return ComputeEngine(
        GCPVMOrchestrator(
            project=GCP_PROJECT,
            zone="europe-west4-a",
            machine_type="n2-standard-8",
            boot_image="projects/debian-cloud/global/images/family/debian-12",
            preemptible=True,
            api_endpoint=gce.url,
            labels={"team": "ml"},
            **options,
        )
    )


def test_compute_engine_takes_the_launch_of_a_spot_vm_with_gpus(gce: FakeGce) -> None:
    cloud = compute_engine(gce, gpu_type="nvidia-tesla-t4", gpu_count=2)
    machine = cloud.machine("20250101-120000-abcdef", 1)
    name, _ = cloud.launch(machine, cloud.launch_request(machine, "#!/bin/bash\n"))
    assert gce.instances[name]["status"] == "RUNNING"
    assert gce.instances[name]["guestAccelerators"] == [
        {
            "acceleratorType": "zones/europe-west4-a/acceleratorTypes/nvidia-tesla-t4",
            "acceleratorCount": 2,
        }
    ]


def _set(
    place: Callable[[dict[str, Any]], dict[str, Any]],
    **values: Any,
) -> Callable[[dict[str, Any]], None]:
    return lambda request: place(request).update(values)


@pytest.mark.parametrize(
    "change, said",
    [
        (
            _set(lambda r: r, name="stackmagic_Run-1"),
            "'resource.name': 'stackmagic_Run-1'. Must be a match of regex",
        ),
        (_set(lambda r: r, machineType="n2-standard-8"), "'resource.machineType': 'n2-standard-8'"),
        (
            _set(lambda r: r, machineType="zones/us-east1-b/machineTypes/n2-standard-8"),
            "Must be in the instance's zone, europe-west4-a",
        ),
        (_set(lambda r: r["disks"][0], boot=False), "Exactly one boot disk is required"),
        (
            lambda r: r["disks"][0]["initializeParams"].pop("sourceImage"),
            "Required field 'resource.disks[0].initializeParams.sourceImage' not specified",
        ),
        (
            _set(lambda r: r["disks"][0]["initializeParams"], sourceImage="debian-12"),
            "'resource.disks[0].initializeParams.sourceImage': 'debian-12'",
        ),
        (lambda r: r.pop("networkInterfaces"), "At least one network interface is required"),
        (
            lambda r: r["metadata"]["items"].append({"key": "startup script", "value": "x"}),
            "'resource.metadata.items[1].key': 'startup script'",
        ),
        (
            _set(lambda r: r["metadata"]["items"][0], value="#" * 300_000),
            "at most 262144 bytes (256 KiB)",
        ),
        (
            lambda r: r["metadata"]["items"].extend(
                {"key": f"part-{n}", "value": "#" * 200_000} for n in range(3)
            ),
            "less than 512 KB",
        ),
        (_set(lambda r: r["labels"], Team="ML"), "'resource.labels.Team': 'ML'"),
        (
            _set(lambda r: r["scheduling"], automaticRestart=True),
            "Preemptible instances cannot be automatically restarted",
        ),
        (
            lambda r: r["scheduling"].pop("automaticRestart"),
            "Preemptible instances cannot be automatically restarted",
        ),
        (
            _set(lambda r: r["scheduling"], onHostMaintenance="MIGRATE"),
            "Preemptible instances must have onHostMaintenance TERMINATE",
        ),
        (
            _set(lambda r: r["scheduling"], provisioningModel="STANDARD"),
            "cannot have the STANDARD provisioning model",
        ),
        (
            _set(lambda r: r["scheduling"], preemptible=False, provisioningModel="STANDARD"),
            "A termination action is only for SPOT instances",
        ),
        (
            _set(lambda r: r["scheduling"], instanceTerminationAction="HIBERNATE"),
            "Must be one of STOP, DELETE",
        ),
        (_set(lambda r: r["guestAccelerators"][0], acceleratorCount=0), "Must be 1 or more"),
    ],
)
def test_compute_engine_refuses_an_insert_it_would_refuse_for_real(
    change: Callable[[dict[str, Any]], Any],
    said: str,
    gce: FakeGce,
) -> None:
    """The fake is as strict as Compute Engine: a launch request gone wrong never passes here."""
    from stackmagic.errors import StackmagicError

    cloud = compute_engine(gce, gpu_type="nvidia-tesla-t4", gpu_count=1)
    machine = cloud.machine("20250101-120000-abcdef", 1)
    request = cloud.launch_request(machine, "#!/bin/bash\n")
    change(request)
    with pytest.raises(StackmagicError) as refused:
        cloud.launch(machine, request)
    assert f"Compute Engine refused to start the VM {machine['name']} (400: " in str(refused.value)
    assert said in str(refused.value)
    assert gce.instances == {}

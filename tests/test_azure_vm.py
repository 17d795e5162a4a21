"""The azure-vm orchestrator: the real azure-mgmt-compute, azure-identity and
azure-keyvault-secrets against a FAKE Azure Resource Manager and Key Vault.

tests/fake_arm.py plays Resource Manager's VMs, Microsoft Entra ID and Key
Vault over TLS, as strict as they are on what they are sent. The custom data a
VM gets is run on this machine as the VM would run it (tests/vm_sandbox.py),
signed in as the VM's managed identity, against MariaDB and Azurite; eviction
is the fake taking a Spot VM back.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Result, wait_for
from fake_arm import RESOURCE_GROUP, SUBNET, VM_IDENTITY, VM_IDENTITY_ID, FakeArm
from fake_azureml import RUNNER, SUBSCRIPTION, TENANT, tls_certificate
from fake_http import requests_text, serve
from services import AZURITE_KEY, DB_CANARY, Database
from team import bucket_options, register_team_stack, secret_sightings, team_notebook
from test_vm import run_id_of, run_taken_back_then_replaced
from vm_sandbox import run_startup_script

SECRET = "team-stores"
#: the launcher's service principal secret, in its environment only
CLIENT_SECRET = "CANARY-azure-runner-7c2a"
VM_SECRET = "vm-identity-secret"


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    """The FAKE Resource Manager over TLS (trusted here), this machine signed in as the
    launcher's service principal, and the VMs' managed identity."""
    cert, key = tls_certificate(tmp_path)
    fake = FakeArm(certificate=cert)
    fake.principals = {RUNNER: CLIENT_SECRET, VM_IDENTITY: VM_SECRET}
    with contextlib.contextmanager(serve)(fake, (cert, key)):
        for variable, value in {
            "REQUESTS_CA_BUNDLE": str(cert),
            "SSL_CERT_FILE": str(cert),
            "AZURE_TENANT_ID": TENANT,
            "AZURE_CLIENT_ID": RUNNER,
            "AZURE_CLIENT_SECRET": CLIENT_SECRET,
            "AZURE_AUTHORITY_HOST": fake.url,
        }.items():
            monkeypatch.setenv(variable, value)
        yield fake


#: what the VM's managed identity gives its custom data (here: the identity's principal)
VM_SIGN_IN = {"AZURE_CLIENT_ID": VM_IDENTITY, "AZURE_CLIENT_SECRET": VM_SECRET}


@pytest.fixture
def azure_stack(
    terminal: Callable[..., Result],
    team_database: Database,
    arm: FakeArm,
    request: pytest.FixtureRequest,
) -> Callable[..., Any]:
    """``make(*flags)``: the team stack (MariaDB, Azurite) with an azure-vm orchestrator."""

    def make(*flags: str) -> Any:
        _, bucket_flags, store = bucket_options("azure", request)
        connection = next(f for f in bucket_flags if f.startswith("--connection-string="))
        arm.secrets[SECRET] = json.dumps(
            {
                "STACKMAGIC_METADATA_STORE_PASSWORD": DB_CANARY,
                "STACKMAGIC_ARTIFACT_STORE_CONNECTION_STRING": connection.split("=", 1)[1],
            }
        )
        register_team_stack(
            terminal,
            team_database,
            bucket_flags,
            orchestrator=[
                "--type=azure-vm",
                f"--subscription-id={SUBSCRIPTION}",
                f"--resource-group={RESOURCE_GROUP}",
                "--location=westeurope",
                f"--subnet-id={SUBNET}",
                f"--managed-identity={VM_IDENTITY_ID}",
                "--size=Standard_D8s_v5",
                "--vm-image=Canonical:ubuntu-24_04-lts:server:latest",
                "--spot=true",
                "--max-price=0.25",
                "--tags=team=ml",
                f"--key-vault-url={arm.url}",
                f"--store-secret={SECRET}",
                f"--resource-manager-url={arm.url}",
                *flags,
            ],
        )
        return store

    return make


def test_azure_vm_creates_a_spot_vm_whose_custom_data_runs_the_pipeline_and_deletes_it(
    azure_stack: Callable[..., Any],
    arm: FakeArm,
    project: Path,
    terminal: Callable[..., Result],
    team_database: Database,
    tmp_path: Path,
) -> None:
    store = azure_stack()
    team_notebook(project)
    launched = terminal("pipeline", "run", "team.ipynb", "--json")
    run_id = run_id_of(launched)

    name = f"stackmagic-{run_id}-1"
    [created] = [json.loads(r.body) for r in arm.requests if r.method == "PUT"]
    properties = created["properties"]
    assert properties["hardwareProfile"] == {"vmSize": "Standard_D8s_v5"}
    assert (properties["priority"], properties["evictionPolicy"]) == ("Spot", "Delete")
    assert properties["billingProfile"] == {"maxPrice": 0.25}
    assert created["identity"] == {
        "type": "UserAssigned",
        "userAssignedIdentities": {VM_IDENTITY_ID: {}},
    }
    assert created["tags"] == {"team": "ml", "stackmagic-run": run_id, "stackmagic-try": "1"}
    assert properties["storageProfile"]["imageReference"]["offer"] == "ubuntu-24_04-lts"
    assert arm.network_interfaces == {f"{name}-nic"} and arm.public_ips == {f"{name}-ip"}
    script = arm.custom_data[name]
    assert "python3 -m stackmagic.runtime vm" in script
    described = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert described["orchestrator_run_id"] == name and described["status"] == "running"

    vm = run_startup_script(script, tmp_path / "vm", VM_SIGN_IN)
    assert vm.returncode == 0, vm.stdout[-3000:] + vm.stderr[-3000:]
    assert arm.deleted == [name], "the VM deleted itself"
    deletes = [r for r in arm.requests if r.method == "DELETE"]
    assert [r.headers["authorization"].startswith("Bearer ") for r in deletes] == [True]
    assert arm.vms == {} and arm.network_interfaces == set() and arm.public_ips == set()
    assert arm.disks == set(), "its NIC, public IP and disk went with it"
    finished = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert finished["status"] == "completed", finished
    logs = terminal("pipeline", "logs", run_id).out
    assert f"Azure VM {name} in {RESOURCE_GROUP}" in logs and "deleting this VM" in logs

    canaries = [DB_CANARY, AZURITE_KEY, CLIENT_SECRET]
    to_azure = [r for r in arm.requests if "/oauth2/" not in r.path]  # all but signing in
    sent = requests_text(to_azure) + "".join(arm.custom_data.values())
    assert [c for c in canaries if c in sent] == [], "no secret in any request to Azure"
    outputs = [launched, Result(vm.returncode, vm.stdout, vm.stderr)]
    assert secret_sightings(canaries, project, store, team_database, outputs) == []


def test_a_dry_run_shows_the_vm_and_starts_records_and_stores_nothing(
    azure_stack: Callable[..., Any],
    arm: FakeArm,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    store = azure_stack()
    team_notebook(project)
    shown = terminal("pipeline", "run", "team.ipynb", "--dry-run")
    assert shown.code == 0, shown.err
    assert "Dry run: azure-vm would start this VM" in shown.out
    assert '"priority": "Spot"' in shown.out and "python3 -m stackmagic.runtime vm" in shown.out
    assert '"customData": "(the startup script below, in base64)"' in shown.out, shown.out
    assert DB_CANARY not in shown.out + shown.err and AZURITE_KEY not in shown.out + shown.err
    as_json = json.loads(terminal("pipeline", "run", "team.ipynb", "--dry-run", "--json").out)
    assert as_json["request"]["properties"]["evictionPolicy"] == "Delete"
    assert arm.requests == [], "nothing asked of Azure"
    assert json.loads(terminal("pipeline", "runs", "--json").out) == [], "no run recorded"
    assert store.find(store.root) == [], "no bundle stored"

    assert terminal("orchestrator", "update", "kf", "--vm-image=").code == 0
    needs_image = terminal("pipeline", "run", "team.ipynb", "--dry-run")
    assert needs_image.code == 2 and "needs --image" in needs_image.err
    assert terminal("orchestrator", "update", "kf", "--image=registry.example/team:1").code == 0
    in_docker = json.loads(terminal("pipeline", "run", "team.ipynb", "--dry-run", "--json").out)
    assert in_docker["request"]["properties"]["storageProfile"]["imageReference"] == {
        "publisher": "microsoft-dsvm",
        "offer": "ubuntu-2204",
        "sku": "2204-gen2",
        "version": "latest",
    }
    assert (
        "docker run --rm --network=host registry.example/team:1 python3 -m"
        in (in_docker["startup_script"])
    )


@pytest.mark.parametrize(
    "refusal, said",
    [
        (
            ("refuse_create", (409, "OperationNotAllowed", "Operation could not be completed as "
             "it results in exceeding approved LowPriorityCores quota.")),
            "OperationNotAllowed: Operation could not be completed as it results in exceeding "
            "approved LowPriorityCores quota",
        ),
        (
            ("fail_create", ("OverconstrainedAllocationRequest", "Allocation failed. VM(s) with "
             "the following constraints cannot be allocated, because the condition is too "
             "restrictive.")),
            "OverconstrainedAllocationRequest: Allocation failed",
        ),
    ],
    ids=["refused at once", "operation ends with an error"],
)  # fmt: skip
def test_a_refused_create_is_one_line_and_a_failed_run(
    refusal: tuple[str, Any],
    said: str,
    azure_stack: Callable[..., Any],
    arm: FakeArm,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    azure_stack()
    team_notebook(project)
    setattr(arm, *refusal)
    refused = terminal("pipeline", "run", "team.ipynb", "--progress", "none")
    assert refused.code == 2, refused.err
    assert len(refused.err.strip().splitlines()) == 1, refused.err
    assert "cannot start the VM stackmagic-" in refused.err and said in refused.err
    assert arm.vms == {} and arm.network_interfaces == set(), "nothing of it is left"
    [run] = json.loads(terminal("pipeline", "runs", "--json").out)
    assert run["status"] == "failed" and said in run["error"]


@pytest.mark.parametrize("policy", ["Delete", "Deallocate"])
def test_an_evicted_vm_without_retries_leaves_a_preempted_run(
    policy: str,
    azure_stack: Callable[..., Any],
    arm: FakeArm,
    project: Path,
    terminal: Callable[..., Result],
) -> None:
    azure_stack(f"--eviction-policy={policy}")
    team_notebook(project)
    run_id = run_id_of(terminal("pipeline", "run", "team.ipynb", "--json"))
    name = f"stackmagic-{run_id}-1"
    assert json.loads(terminal("pipeline", "describe", run_id, "--json").out)["status"] == (
        "running"
    ), "a run whose VM still runs goes on"

    arm.evict(name)
    assert (name in arm.vms) == (policy == "Deallocate")
    described = json.loads(terminal("pipeline", "describe", run_id, "--json").out)
    assert described["status"] == "preempted", described
    assert described["error"] == f"preempted: the VM {name} ended before the run did"


def test_an_evicted_vm_is_replaced_under_retries_and_finished_steps_come_from_the_cache(
    azure_stack: Callable[..., Any],
    arm: FakeArm,
    project: Path,
    tmp_path: Path,
    terminal: Callable[..., Result],
) -> None:
    azure_stack("--retries=1")

    def script_of(attempt: int) -> Callable[[str], str]:
        def script(run_id: str) -> str:
            name = f"stackmagic-{run_id}-{attempt}"
            wait_for(lambda: name in arm.vms, timeout=90, what=f"VM {name}")
            return arm.custom_data[name]

        return script

    run_id = run_taken_back_then_replaced(
        project,
        tmp_path,
        terminal,
        script_of(1),
        lambda run_id: arm.evict(f"stackmagic-{run_id}-1"),
        script_of(2),
        VM_SIGN_IN,
    )
    assert arm.deleted == [f"stackmagic-{run_id}-2"], (
        "the second VM deleted itself; Azure took the first"
    )


def azure_vm(arm: FakeArm, **options: Any) -> Any:
    """The azure-vm orchestrator's cloud, as the team stack's options make it."""
    from stackmagic.flavors.vm_orchestrators import AzureVMOrchestrator
    from stackmagic.orchestrators.azure_vm import AzureVM

    return AzureVM(
        AzureVMOrchestrator(
            subscription_id=SUBSCRIPTION,
            resource_group=RESOURCE_GROUP,
            location="westeurope",
            subnet_id=SUBNET,
            managed_identity=VM_IDENTITY_ID,
            spot=True,
            resource_manager_url=arm.url,
            key_vault_url=arm.url,
            **options,
        )
    )


def _set(
    place: Callable[[dict[str, Any]], dict[str, Any]], **values: Any
) -> Callable[[dict[str, Any]], None]:
    return lambda request: place(request).update(values)


def _properties(request: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = request["properties"]
    return properties


def _ip(request: dict[str, Any]) -> dict[str, Any]:
    nic = _properties(request)["networkProfile"]["networkInterfaceConfigurations"][0]
    ip: dict[str, Any] = nic["properties"]["ipConfigurations"][0]["properties"]
    return ip


@pytest.mark.parametrize(
    "change, said",
    [
        (_set(lambda r: r, zone="1"), "Could not find member 'zone'"),
        (lambda r: _properties(r).pop("evictionPolicy"), "A Spot VM needs an evictionPolicy"),
        (_set(_properties, evictionPolicy="Stop"), "A Spot VM needs an evictionPolicy"),
        (
            _set(lambda r: _properties(r)["billingProfile"], maxPrice=0),
            "billingProfile.maxPrice 0 must be -1 or a price above 0",
        ),
        (
            _set(_properties, priority="Regular"),
            "evictionPolicy and billingProfile are for Spot VMs only",
        ),
        (_set(lambda r: _properties(r)["hardwareProfile"], vmSize="D4s"), "The VM size 'D4s'"),
        (lambda r: r.pop("location"), "Required parameter 'location' is missing"),
        (
            _set(lambda r: _properties(r)["osProfile"], customData="#!/bin/bash"),
            "osProfile.customData must be base64",
        ),
        (
            _set(lambda r: _properties(r)["osProfile"], adminUsername="root"),
            "osProfile.adminUsername 'root' is not allowed",
        ),
        (
            _set(lambda r: _properties(r)["osProfile"]["linuxConfiguration"], ssh={}),
            "Authentication using either SSH or by user name and password must be enabled",
        ),
        (
            _set(lambda r: r["identity"], userAssignedIdentities={"/x": {}}),
            "The user-assigned identity '/x' was not found",
        ),
        (_set(lambda r: _ip(r), subnet={"id": "/x"}), "Resource {'id': '/x'} referenced"),
        (
            _set(lambda r: _ip(r)["publicIPAddressConfiguration"]["properties"],
                 publicIPAllocationMethod="Dynamic"),
            "A Standard SKU public IP address must use the Static allocation method",
        ),
        (
            _set(lambda r: _properties(r)["networkProfile"], networkApiVersion="2019-07-01"),
            "need networkApiVersion 2020-11-01 or later",
        ),
        (
            _set(lambda r: _properties(r)["storageProfile"]["osDisk"], deleteOption="Keep"),
            "osDisk.deleteOption 'Keep' is not one of Delete, Detach",
        ),
        (
            _set(lambda r: _properties(r)["storageProfile"], imageReference={"offer": "x"}),
            "needs an id or publisher, offer, sku and version",
        ),
    ],
)  # fmt: skip
def test_resource_manager_refuses_a_vm_it_would_refuse_for_real(
    change: Callable[[dict[str, Any]], Any], said: str, arm: FakeArm
) -> None:
    """The fake is as strict as Azure: a launch request gone wrong never passes here."""
    from stackmagic.errors import StackmagicError

    cloud = azure_vm(arm, vm_image="Canonical:ubuntu-24_04-lts:server:latest")
    machine = cloud.machine("20250101-120000-abcdef", 1)
    request = cloud.launch_request(machine, "#!/bin/bash\n")
    name, _ = cloud.launch(machine, json.loads(json.dumps(request)))
    assert arm.vms[name]["properties"]["provisioningState"] == "Succeeded", "it takes it as is"
    assert cloud.state(machine, name) == "running"

    machine = cloud.machine("20250101-120000-abcdef", 2)
    request = cloud.launch_request(machine, "#!/bin/bash\n")
    change(request)
    with pytest.raises(StackmagicError) as refused:
        cloud.launch(machine, request)
    assert f"cannot start the VM {machine['name']}: InvalidParameter: " in str(refused.value)
    assert said in str(refused.value)
    assert list(arm.vms) == [name]

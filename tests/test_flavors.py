"""Every built-in flavor registers, validates and describes; plugins add flavors."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import BIN

from notebooks import write_notebook
from stackmagic.flavors import BUILTIN_FLAVORS

MINIMAL_OPTIONS = {
    ("artifact-store", "local"): [],
    ("artifact-store", "gcp"): ["--path=gs://bucket/dir"],
    ("artifact-store", "s3"): ["--path=s3://bucket/dir"],
    ("artifact-store", "azure"): ["--path=az://container/dir"],
    ("metadata-store", "sqlite"): [],
    ("metadata-store", "mysql"): ["--host=db", "--database=ml"],
    ("metadata-store", "postgresql"): ["--host=db", "--database=ml"],
    ("orchestrator", "local"): [],
    ("orchestrator", "kubeflow"): ["--host=https://kfp.example.org"],
    ("orchestrator", "vertex"): ["--project=my-project"],
    ("orchestrator", "gcp-vm"): ["--project=my-project"],
    ("orchestrator", "aws-vm"): [],
    ("orchestrator", "azure-vm"): [
        "--subscription-id=s",
        "--resource-group=g",
        "--subnet-id=/s/subnets/d",
        "--managed-identity=/i",
    ],
    ("orchestrator", "kubernetes"): ["--image=registry.example.com/team:1"],
    ("orchestrator", "airflow"): ["--api-url=http://airflow:8080", "--dags-uri=s3://bucket/dags"],
    ("step-operator", "sagemaker"): ["--role=arn:aws:iam::123456789012:role/sm"],
    ("step-operator", "azureml"): [
        "--subscription-id=s",
        "--resource-group=g",
        "--workspace-name=w",
    ],
    ("step-operator", "vertex"): ["--project=my-project"],
    ("step-operator", "kubernetes"): [],
    ("experiment-tracker", "mlflow"): ["--tracking-uri=http://mlflow.example.org:5000"],
    ("experiment-tracker", "wandb"): [],
}


def test_every_builtin_flavor_has_an_example() -> None:
    assert {(f.component_type.value, f.flavor) for f in BUILTIN_FLAVORS} == set(MINIMAL_OPTIONS)


@pytest.mark.parametrize("kind, flavor", MINIMAL_OPTIONS, ids=lambda value: str(value))
def test_builtin_flavor_registers_and_describes(project: Path, cli, kind: str, flavor: str) -> None:
    cli("init")
    result = cli(kind, "register", "example", f"--type={flavor}", *MINIMAL_OPTIONS[kind, flavor])
    assert result.code == 0, result.err
    described = json.loads(cli(kind, "describe", "example", "--json").out)
    assert described["flavor"] == flavor
    for option in MINIMAL_OPTIONS[kind, flavor]:
        key, value = option[2:].split("=", 1)
        assert described["options"][key.replace("-", "_")] == value


@pytest.mark.parametrize(
    "kind, flavor",
    [key for key, options in MINIMAL_OPTIONS.items() if options and key[1] != "kubeflow"],
)
def test_required_options_are_named_when_missing(
    project: Path, cli, kind: str, flavor: str
) -> None:
    result = cli(kind, "register", "example", f"--type={flavor}")
    assert result.code == 2
    for option in MINIMAL_OPTIONS[kind, flavor]:
        assert option.split("=")[0] in result.err


PLUGIN = textwrap.dedent(
    '''
    import traitlets as t
    from stackmagic.flavors import ArtifactStoreConfig

    class HDFSArtifactStore(ArtifactStoreConfig):
        """An HDFS folder, through fsspec's hdfs support."""

        flavor = "hdfs"
        path = t.Unicode(help="hdfs://namenode/dir").tag(required=True)
        kerberos_ticket = t.Unicode(help="Ticket cache.").tag(secret=True)
    '''
)


def install_plugin(site: Path, entry_points: str, source: str = PLUGIN) -> None:
    (site / "hdfs_flavor.py").write_text(source)
    info = site / "hdfs_flavor-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hdfs-flavor\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[stackmagic.flavors]\n{entry_points}\n")


def test_third_party_flavor_loads_through_the_entry_point(project: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "hdfs = hdfs_flavor:HDFSArtifactStore\nbroken = no_such_module:Flavor")
    env = {**os.environ, "PYTHONPATH": str(site)}

    def stackmagic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "stackmagic"), *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert stackmagic("init").returncode == 0
    flavors = stackmagic("artifact-store", "flavors")
    assert flavors.returncode == 0
    assert "hdfs (An HDFS folder" in flavors.stdout
    assert "skipping flavor 'broken'" in flavors.stderr

    registered = stackmagic(
        "artifact-store",
        "register",
        "lake",
        "--type=hdfs",
        "--path=hdfs://nn/data",
        "--kerberos-ticket=TICKET-CANARY",
    )
    assert registered.returncode == 0, registered.stderr
    described = stackmagic("artifact-store", "describe", "lake")
    assert "hdfs://nn/data" in described.stdout
    assert "TICKET-CANARY" not in described.stdout
    assert "TICKET-CANARY" not in (project / ".stackmagic" / "config.json").read_text()


def test_a_third_party_flavor_without_its_kinds_base_class_is_refused_in_one_line(
    project: Path, tmp_path: Path
) -> None:
    """An orchestrator flavor that derives from FlavorConfig alone cannot run steps: the run says
    which class is at fault, where it used to end in an AttributeError traceback."""
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(
        site,
        "slurm = hdfs_flavor:SlurmOrchestrator",
        source=textwrap.dedent(
            '''
        from stackmagic.component_type import ComponentType
        from stackmagic.flavors import FlavorConfig

        class SlurmOrchestrator(FlavorConfig):
            """Runs the steps on a Slurm cluster."""

            component_type = ComponentType.ORCHESTRATOR
            flavor = "slurm"
        '''
        ),
    )
    env = {**os.environ, "PYTHONPATH": str(site)}

    def stackmagic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "stackmagic"), *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    for command in (
        ("init",),
        ("orchestrator", "register", "hpc", "--type=slurm"),
        ("stack", "register", "hpc", "-m", "default", "-a", "default", "-o", "hpc"),
    ):
        assert stackmagic(*command).returncode == 0, command
    notebook = write_notebook(project / "tiny.ipynb", "%%step one\nx = 1")

    ran = stackmagic("pipeline", "run", str(notebook), "--stack", "hpc")
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.strip().splitlines() == [
        "stackmagic: error: the slurm orchestrator flavor cannot be used: its class "
        "hdfs_flavor.SlurmOrchestrator does not derive from stackmagic's OrchestratorConfig; "
        "tell the makers of the package that declares it"
    ]
    assert json.loads(stackmagic("pipeline", "runs", "--json", "--stack", "hpc").stdout) == []

"""Secrets never land in the project's files, in output, or in JSON."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pexpect
import pytest
from conftest import BIN, CANARY, REFERENCE_SEQUENCE, snapshot
from test_flavors import MINIMAL_OPTIONS

from stackmagic.errors import StackmagicError
from stackmagic.flavors import ComponentType, flavors_of, option_flag
from stackmagic.registry import Registry


def everything_under(folder: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()
    )


def test_password_is_in_no_project_file_and_no_output(project: Path, home: Path, cli) -> None:
    outputs = [cli("init")]
    outputs += [cli(*words) for words in REFERENCE_SEQUENCE]
    for words in (
        ["stack", "list"],
        ["stack", "list", "--json"],
        ["stack", "describe"],
        ["stack", "describe", "--json"],
        ["metadata-store", "list"],
        ["metadata-store", "list", "--json"],
        ["metadata-store", "describe", "sql"],
        ["metadata-store", "describe", "sql", "--json"],
        ["stack", "get", "--json"],
    ):
        outputs.append(cli(*words))
    assert all(result.code == 0 for result in outputs)
    assert not any(CANARY in result.out + result.err for result in outputs)
    assert "********" in cli("metadata-store", "describe", "sql").out

    assert CANARY not in everything_under(project)
    secrets_file = home / "secrets.json"
    assert CANARY in secrets_file.read_text()
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert not secrets_file.resolve().is_relative_to(project)

    registry = Registry.open()
    sql = registry.component(ComponentType.METADATA_STORE, "sql")
    assert registry.resolve_secret(sql, "password") == CANARY


def test_html_output_masks_secrets(project: Path, cli) -> None:
    from stackmagic.parser import run

    for words in REFERENCE_SEQUENCE:
        cli(*words)
    for words in (
        ["stack", "describe"],
        ["metadata-store", "list"],
        ["metadata-store", "describe", "sql"],
    ):
        output, _ = run(words)
        assert CANARY not in output._repr_html_()
        assert "secret:" not in output._repr_html_()


def test_environment_reference_is_stored_as_a_reference(project: Path, cli, monkeypatch) -> None:
    cli("init")
    cli(
        "metadata-store",
        "register",
        "db",
        "--type=mysql",
        "--host=h",
        "--database=d",
        "--password=env:TEAM_DB_PASSWORD",
    )
    config = json.loads((project / ".stackmagic" / "config.json").read_text())
    assert (
        config["components"]["metadata-store"]["db"]["options"]["password"]
        == "env:TEAM_DB_PASSWORD"
    )
    assert "env:TEAM_DB_PASSWORD" in cli("metadata-store", "describe", "db").out

    registry = Registry.open()
    db = registry.component(ComponentType.METADATA_STORE, "db")
    monkeypatch.setenv("TEAM_DB_PASSWORD", "from-the-environment")
    assert registry.resolve_secret(db, "password") == "from-the-environment"
    monkeypatch.delenv("TEAM_DB_PASSWORD")
    with pytest.raises(StackmagicError, match="TEAM_DB_PASSWORD, which is not set"):
        registry.resolve_secret(db, "password")


def test_update_replaces_and_delete_removes_the_stored_secret(
    project: Path, home: Path, cli
) -> None:
    cli("init")
    cli(
        "artifact-store",
        "register",
        "s3",
        "--type=s3",
        "--path=s3://b",
        "--secret-access-key=FIRST-KEY",
    )
    assert "FIRST-KEY" in (home / "secrets.json").read_text()
    cli("artifact-store", "update", "s3", "--secret-access-key=SECOND-KEY")
    stored = (home / "secrets.json").read_text()
    assert "SECOND-KEY" in stored and "FIRST-KEY" not in stored
    cli("artifact-store", "update", "s3", "--region=eu-west-1")
    assert "SECOND-KEY" in (home / "secrets.json").read_text()
    cli("artifact-store", "delete", "s3")
    assert "SECOND-KEY" not in (home / "secrets.json").read_text()


def test_secret_missing_on_another_machine_says_how_to_set_it(
    project: Path, home: Path, cli
) -> None:
    for words in REFERENCE_SEQUENCE:
        cli(*words)
    (home / "secrets.json").write_text("{}")
    registry = Registry.open()
    sql = registry.component(ComponentType.METADATA_STORE, "sql")
    with pytest.raises(StackmagicError, match="stackmagic metadata-store update sql --password="):
        registry.resolve_secret(sql, "password")


def answer_the_password_prompt(project: Path, flavor: str, answer: str) -> pexpect.spawn:
    """`metadata-store register db --password=-` in a real terminal, answered; ended."""
    child = pexpect.spawn(
        str(BIN / "stackmagic"),
        [
            "metadata-store",
            "register",
            "db",
            f"--type={flavor}",
            "--host=h",
            "--database=d",
            "--password=-",
        ],
        cwd=str(project),
        env=dict(os.environ),
        encoding="utf-8",
        timeout=30,
    )
    child.expect("--password for db: ")
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    return child


def test_dash_asks_for_the_secret_without_echo(project: Path, home: Path) -> None:
    child = answer_the_password_prompt(project, "postgresql", "typed-" + CANARY)
    assert child.exitstatus == 0, child.before
    assert CANARY not in child.before
    assert "typed-" + CANARY in (home / "secrets.json").read_text()


def test_a_secret_before_the_name_is_never_taken_for_the_name(
    project: Path, home: Path, cli
) -> None:
    cli("init")
    result = cli(
        "metadata-store",
        "register",
        "--password",
        CANARY,
        "sql",
        "--type=mysql",
        "--host=h",
        "--database=d",
    )
    assert result.code == 0, result.err
    assert CANARY not in result.out + result.err
    assert CANARY not in everything_under(project)
    registry = Registry.open()
    assert (
        registry.resolve_secret(registry.component(ComponentType.METADATA_STORE, "sql"), "password")
        == CANARY
    )
    updated = cli("metadata-store", "update", "--password", "NEW-" + CANARY, "sql")
    assert updated.code == 0 and CANARY not in updated.out + updated.err


def test_prompt_without_a_terminal_is_one_clear_line(project: Path) -> None:
    import subprocess

    completed = subprocess.run(
        [
            str(BIN / "stackmagic"),
            "metadata-store",
            "register",
            "db",
            "--type=mysql",
            "--host=h",
            "--database=d",
            "--password=-",
        ],
        cwd=project,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no controlling terminal, as under a scheduler
    )
    assert completed.returncode == 2
    assert "cannot ask for --password here" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_empty_answer_at_the_prompt_changes_nothing(project: Path, home: Path, cli) -> None:
    cli("init")
    before = snapshot(project / ".stackmagic"), snapshot(home)
    child = answer_the_password_prompt(project, "mysql", "")
    assert child.exitstatus == 2
    assert "nothing was typed for --password" in child.before
    assert (snapshot(project / ".stackmagic"), snapshot(home)) == before


#: Options whose names say key, secret, token, password or connection, yet hold no secret.
NOT_SECRET = {
    "access_key_id": "names an AWS key; the secret is --secret-access-key",
    "ssl_key": "the path of a client key file, which stays on this machine",
    "store_secret": "the name of a secret the cluster or cloud keeps, not its value",
    "key_vault_url": "the address of the Key Vault that keeps --store-secret",
    "ssh_public_key": "the public half of an SSH key, which the VM is given to trust",
    "encryption_key": "the resource name of a Cloud KMS key, whose key material stays in KMS",
    "image_pull_secrets": "names of Kubernetes secrets for a registry, not their values",
    "secret_manager_endpoint": "the address of the Secret Manager API, not a secret",
}
SECRET_WORDS = ("key", "secret", "token", "password", "connection")
#: Other options a secret option needs beside it to be accepted.
COMPANIONS = {
    ("kubeflow", "token"): ["--auth=token"],
    ("airflow", "password"): ["--username=u"],
    ("mlflow", "password"): ["--username=u"],
}


def _secret_options() -> list[tuple[ComponentType, str, str]]:
    """Every option of every flavor whose name says it holds a secret, from the flavors' own
    declarations: an option added later is covered without a change here."""
    return [
        (kind, flavor_name, option)
        for kind in ComponentType
        for flavor_name, flavor in flavors_of(kind).items()
        for option in flavor.options()
        if any(word in option for word in SECRET_WORDS) and option not in NOT_SECRET
    ]


SECRET_OPTIONS = _secret_options()


@pytest.mark.parametrize(
    "kind, flavor, option",
    SECRET_OPTIONS,
    ids=[f"{k.value} {f} {option_flag(o)}" for k, f, o in SECRET_OPTIONS],
)
def test_every_secret_option_is_tagged_kept_out_of_the_config_and_masked(
    project: Path, home: Path, cli, kind: ComponentType, flavor: str, option: str
) -> None:
    assert flavors_of(kind)[flavor].options()[option].metadata.get("secret"), (
        f"{option_flag(option)} of the {flavor} {kind.noun} is not tagged secret=True"
    )
    canary = f"CANARY-{option}-{os.urandom(4).hex()}"
    cli("init")
    registered = cli(
        kind.value,
        "register",
        "example",
        f"--type={flavor}",
        *MINIMAL_OPTIONS[kind.value, flavor],
        *COMPANIONS.get((flavor, option), []),
        f"{option_flag(option)}={canary}",
    )
    assert registered.code == 0, registered.err
    shown = [registered] + [
        cli(kind.value, *words)
        for words in (
            ["list"],
            ["list", "--json"],
            ["describe", "example"],
            ["describe", "example", "--json"],
        )
    ]
    assert all(canary not in result.out + result.err for result in shown)
    described = json.loads(cli(kind.value, "describe", "example", "--json").out)
    assert described["options"][option] == "********"
    assert canary not in everything_under(project)
    assert canary in (home / "secrets.json").read_text(), "kept for the user, outside the project"

"""Every mistake gives one clear line, exit code 2, and leaves .stackmagic/ byte-identical."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REFERENCE_SEQUENCE, snapshot

BAD_INPUTS = {
    "unknown command": (["stak", "list"], "invalid choice: 'stak'"),
    "unknown action": (["stack", "activate", "gcp"], "invalid choice: 'activate'"),
    "unknown component": (
        ["stack", "register", "x", "-m", "nope", "-a", "gcs", "-o", "kf"],
        "no metadata store named 'nope'",
    ),
    "unknown flavor lists the valid ones": (
        ["artifact-store", "register", "x", "--type=hdfs"],
        "valid flavors: local, gcp, s3, azure",
    ),
    "unknown option lists the valid ones": (
        ["artifact-store", "register", "x", "--type=gcp", "--path=gs://b", "--bucket=b"],
        "its options are: --path",
    ),
    "invalid name": (
        ["artifact-store", "register", "my store", "--type=local"],
        "invalid artifact store name",
    ),
    "name starting with a digit": (
        ["stack", "register", "1st", "-m", "sql", "-a", "gcs", "-o", "kf"],
        "invalid stack name '1st'",
    ),
    "missing required option": (
        ["metadata-store", "register", "db", "--type=mysql", "--host=h"],
        "needs --database",
    ),
    "missing --type": (["artifact-store", "register", "x"], "--type"),
    "missing stack member": (
        ["stack", "register", "x", "-m", "sql", "-a", "gcs"],
        "-o/--orchestrator",
    ),
    "wrong URL scheme": (
        ["artifact-store", "register", "x", "--type=gcp", "--path=s3://b"],
        "gs://bucket/dir",
    ),
    "not a number": (
        ["orchestrator", "register", "x", "--type=gcp-vm", "--project=p", "--disk-size-gb=big"],
        "expects a whole number",
    ),
    "not a choice": (
        ["orchestrator", "register", "x", "--type=kubeflow", "--mode=cloud"],
        "must be one of remote, local",
    ),
    "bare flag for a text option": (
        ["orchestrator", "register", "x", "--type=kubeflow", "--host"],
        "--host needs a value",
    ),
    "option given twice": (
        ["artifact-store", "register", "x", "--type=local", "--path=a", "--path=b"],
        "given twice",
    ),
    "duplicate component": (
        ["artifact-store", "register", "gcs", "--type=local"],
        "already exists",
    ),
    "duplicate stack": (
        ["stack", "register", "gcp", "-m", "sql", "-a", "gcs", "-o", "kf"],
        "already exists",
    ),
    "deleting a component a stack uses": (
        ["metadata-store", "delete", "sql"],
        "is used by stack gcp",
    ),
    "deleting the active stack": (["stack", "delete", "gcp"], "is active"),
    "deleting the default stack": (["stack", "delete", "default"], "cannot be deleted"),
    "setting an unknown stack": (["stack", "set", "prod"], "no stack named 'prod'"),
    "remote orchestrator with a local artifact store": (
        ["stack", "register", "x", "-m", "sql", "-a", "default", "-o", "kf"],
        "register a gcp, s3 or azure artifact store for -a",
    ),
    "remote orchestrator with a SQLite metadata store": (
        ["stack", "register", "x", "-m", "default", "-a", "gcs", "-o", "kf"],
        "register a mysql or postgresql metadata store for -m",
    ),
    "step operator with a local artifact store": (
        ["stack", "register", "x", "-m", "sql", "-a", "default", "-o", "default", "-s", "sm"],
        "step operator 'sm' (sagemaker) runs steps off this machine, where the local artifact store",
    ),
    "step operator added to a stack on local stores": (
        ["stack", "update", "kfp-here", "-s", "sm"],
        "step operator 'sm' (sagemaker) runs steps off this machine",
    ),
    "updating a component so a stack breaks": (
        ["orchestrator", "update", "local-kf", "--mode=remote", "--host=https://kf"],
        "that change to orchestrator 'local-kf' would break stack",
    ),
    "update with nothing to change": (["artifact-store", "update", "gcs"], "nothing to change"),
    "stray argument": (["stack", "get", "now"], "unrecognized arguments: now"),
    "name ending in a newline": (
        ["artifact-store", "register", "evil\n", "--type=local"],
        "invalid artifact store name",
    ),
    "bucket missing from the URL": (
        ["artifact-store", "register", "x", "--type=gcp", "--path=gs:////"],
        "gs://bucket/dir",
    ),
    "empty local path": (
        ["artifact-store", "register", "x", "--type=local", "--path="],
        "--path cannot be empty",
    ),
    "option without a name": (
        ["artifact-store", "register", "x", "--type=local", "--=x"],
        "an option name is missing",
    ),
    "changing the flavor": (
        ["artifact-store", "update", "gcs", "--type=s3"],
        "the flavor of a component cannot change",
    ),
    "step operator both set and removed": (
        ["stack", "update", "gcp", "-s", "x", "--no-step-operator"],
        "contradict each other",
    ),
    "unquoted value with a space is not echoed": (
        ["metadata-store", "update", "sql", "--password", "two", "SECRET-TAIL"],
        "quote a value that contains spaces",
    ),
    "empty stack name": (["stack", "describe", ""], "argument NAME: cannot be empty"),
    "empty --stack": (["pipeline", "runs", "--stack", ""], "argument --stack: cannot be empty"),
    "stack name differing only in case": (
        ["stack", "register", "GCP", "-m", "sql", "-a", "gcs", "-o", "kf"],
        "stack 'GCP' differs from the existing stack 'gcp' only in case",
    ),
    "component name differing only in case": (
        ["artifact-store", "register", "Default", "--type=local"],
        "artifact store 'Default' differs from the existing artifact store 'default' only in case",
    ),
    "line break in a name is shown escaped": (
        ["stack", "set", "prod\nuction"],
        "no stack named 'prod\\nuction'",
    ),
    "line break in an option name is shown escaped": (
        ["artifact-store", "register", "x", "--type=local", "--pa\nth=x"],
        "no option --pa\\nth",
    ),
    "SQLite file in a system folder": (
        ["metadata-store", "register", "m", "--type=sqlite", "--path=/etc/passwd"],
        "is in the system folder",
    ),
    "SQLite file that is no database": (
        ["metadata-store", "register", "m", "--type=sqlite", "--path=.stackmagic/config.json"],
        "exists and is not a SQLite database",
    ),
    "more steps at once than a machine runs": (
        ["orchestrator", "register", "x", "--type=local", "--max-workers=100000000000000000000000"],
        "from 1 to 256",
    ),
}


@pytest.fixture
def populated(project: Path, cli) -> Path:
    """A project with the reference stack active, a kfp.local stack on local stores and a
    SageMaker step operator."""
    assert cli("init").code == 0
    for words in REFERENCE_SEQUENCE:
        assert cli(*words).code == 0
    assert (
        cli(
            "step-operator",
            "register",
            "sm",
            "--type=sagemaker",
            "--role=arn:aws:iam::123456789012:role/sm",
        ).code
        == 0
    )
    assert cli("orchestrator", "register", "local-kf", "--type=kubeflow", "--mode=local").code == 0
    assert (
        cli(
            "stack", "register", "kfp-here", "-m", "default", "-a", "default", "-o", "local-kf"
        ).code
        == 0
    )
    return project / ".stackmagic"


@pytest.mark.parametrize("words, expected", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_gives_one_line_and_changes_nothing(
    populated: Path, home: Path, terminal, words: list[str], expected: str
) -> None:
    before, secrets_before = snapshot(populated), snapshot(home)
    assert "config.json" in before and "secrets.json" in secrets_before
    result = terminal(*words)
    assert result.code == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("stackmagic")
    assert expected in lines[0]
    assert "Traceback" not in result.err
    assert "SECRET-TAIL" not in result.err
    assert snapshot(populated) == before
    assert snapshot(home) == secrets_before


def test_stack_set_refuses_a_stack_made_invalid_by_hand(populated: Path, cli) -> None:
    """A hand-edited config cannot smuggle in a remote orchestrator on local stores."""
    config = populated / "config.json"
    config.write_text(
        config.read_text().replace('"metadata-store": "sql"', '"metadata-store": "default"')
    )
    before = snapshot(populated)
    result = cli("stack", "set", "gcp")
    assert result.code == 2 and "cannot be reached" in result.err
    assert snapshot(populated) == before


def test_a_bad_stack_override_refuses_before_writing(populated: Path, terminal) -> None:
    before = snapshot(populated)
    for words in (["stack", "set", "default"], ["stack", "update", "kfp-here", "-m", "default"]):
        result = terminal(*words, env={"STACKMAGIC_STACK": "nope"})
        assert result.code == 2 and "STACKMAGIC_STACK=nope" in result.err
    assert snapshot(populated) == before


UNREADABLE_CONFIGS = {
    "not JSON": (b'{"version": 1, "stacks": ', "is not valid JSON"),
    "a stack of the wrong shape": (
        b'{"version": 1, "active_stack": "default", "components": {}, "stacks": {"default": 5}}',
        "is damaged (stacks.default missing or malformed)",
    ),
    "a component of the wrong shape": (
        b'{"version": 1, "active_stack": "default", "components": {"orchestrator": {"x": []}}, '
        b'"stacks": {}}',
        "is damaged (components.orchestrator.x missing or malformed)",
    ),
    "newer format": (
        b'{"version": 99, "active_stack": "default", "components": {}, "stacks": {}}',
        "upgrade stackmagic",
    ),
    "missing parts": (b'{"version": 1}', "is damaged (active_stack, components, stacks"),
    "not UTF-8": (b'{"version": 1, "x": "\xff"}', "is not UTF-8 text"),
}


@pytest.mark.parametrize(
    "content, message", UNREADABLE_CONFIGS.values(), ids=UNREADABLE_CONFIGS.keys()
)
def test_unreadable_config_is_one_line_and_never_overwritten(
    project: Path, cli, content: bytes, message: str
) -> None:
    cli("init")
    config = project / ".stackmagic" / "config.json"
    config.write_bytes(content)
    for words in (
        ["stack", "list"],
        ["stack", "set", "default"],
        ["artifact-store", "register", "x", "--type=local"],
    ):
        result = cli(*words)
        assert result.code == 2 and message in result.err
        assert result.err.count("\n") == 1
    assert config.read_bytes() == content


@pytest.mark.parametrize(
    "content",
    [b'{"version": 1, "stacks": ', UNREADABLE_CONFIGS["a stack of the wrong shape"][0]],
    ids=["truncated", "wrong shape"],
)
def test_init_on_a_damaged_config_says_so_and_keeps_it(
    project: Path, terminal, content: bytes
) -> None:
    config = project / ".stackmagic" / "config.json"
    config.parent.mkdir()
    config.write_bytes(content)
    result = terminal("init")
    assert result.code == 2 and result.out == "" and result.err.count("\n") == 1, result
    assert str(config) in result.err
    assert "move it aside and run `stackmagic init`" in result.err
    assert config.read_bytes() == content


def test_a_postgresql_role_that_does_not_exist_is_named(
    project: Path, terminal, postgresql_database
) -> None:
    assert (
        terminal(
            "metadata-store",
            "register",
            "pg",
            "--type=postgresql",
            "--host=127.0.0.1",
            "--username=sm_no_such_role",
            f"--database={postgresql_database.database}",
        ).code
        == 0
    )
    assert (
        terminal("stack", "register", "pg", "-m", "pg", "-a", "default", "-o", "default").code == 0
    )
    result = terminal("pipeline", "runs", "--stack", "pg")
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert "that user (role) does not exist on the server" in result.err
    assert "fix --username" in result.err and "create that database" not in result.err


def test_unwritable_home_is_one_line(project: Path, tmp_path: Path, terminal) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = terminal("stack", "get", env={"STACKMAGIC_HOME": str(blocker / "home")})
    assert result.code == 2
    assert result.err.count("\n") == 1 and "Traceback" not in result.err

"""Helpers for tests on a team stack: a MariaDB database, a bucket, a small pipeline.

The team database's user has a canary password and the S3 secret key is a
canary too: tests search for both wherever a secret must never appear.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Result
from services import DB_CANARY, S3_CANARY, Database, storage_options
from sqlalchemy import create_engine, inspect, text

from notebooks import write_notebook
from stackmagic.stores.artifacts import ArtifactStore


def bucket_options(
    kind: str, request: pytest.FixtureRequest
) -> tuple[str, list[str], ArtifactStore]:
    """A new bucket: its registration options, and the store for looking inside it."""
    url = request.getfixturevalue("bucket")(kind)
    server = request.getfixturevalue(
        {"s3": "s3_server", "gcs": "gcs_server", "azure": "azurite_server"}[kind]
    )
    options = storage_options(kind, server)
    if kind == "s3":
        flags = [
            "--type=s3",
            f"--endpoint-url={server.endpoint_url}",
            "--access-key-id=testing",
            f"--secret-access-key={S3_CANARY}",
        ]  # moto takes any secret
    elif kind == "gcs":
        flags = ["--type=gcp", f"--endpoint-url={server.endpoint_url}", "--anonymous=true"]
    else:
        flags = ["--type=azure", f"--connection-string={server.connection_string}"]
    return url, [f"--path={url}", *flags], ArtifactStore(url, options)


def register_team_stack(
    terminal: Callable[..., Result],
    database: Database,
    bucket_flags: list[str],
    password: str | None = DB_CANARY,
    flavor: str = "mysql",
    orchestrator: list[str] | None = None,
) -> None:
    """Register and activate stack ``team``; ``orchestrator``: flags of one to register as ``kf``."""
    commands = [
        ["init"],
        [
            "metadata-store",
            "register",
            "team-db",
            f"--type={flavor}",
            f"--host={database.host}",
            f"--port={database.port}",
            f"--username={database.username}",
            f"--database={database.database}",
            *([f"--password={password}"] if password else []),
        ],
        ["artifact-store", "register", "bucket", *bucket_flags],
        *([["orchestrator", "register", "kf", *orchestrator]] if orchestrator else []),
        [
            "stack",
            "register",
            "team",
            "-m",
            "team-db",
            "-a",
            "bucket",
            "-o",
            "kf" if orchestrator else "default",
        ],
        ["stack", "set", "team"],
    ]
    for words in commands:
        result = terminal(*words)
        assert result.code == 0, result.err


def team_notebook(folder: Path, *more_steps: str) -> Path:
    return write_notebook(
        folder / "team.ipynb",
        "import numpy as np\nimport stackmagic",
        "%%step load\nfeatures = np.arange(1000.0) * scale",
        "%%step train\nweights = features.mean()\nstackmagic.log_metric('mean', weights)",
        "%%step report\nsummary = {'weights': float(weights), 'scale': scale}",
        *more_steps,
        parameters="scale = 2.0",
    )


def secret_sightings(
    canaries: list[str],
    folder: Path,
    bucket: ArtifactStore,
    database: Database,
    outputs: list[Result],
) -> list[str]:
    """Where any canary appears: files (the secret file aside), objects, rows, output."""
    places: dict[str, bytes] = {}
    for path in folder.rglob("*"):
        if path.is_file() and path.name != "secrets.json":
            places[str(path)] = path.read_bytes()
    for uri in bucket.find(bucket.root):
        places[uri] = bucket.read_bytes(uri)
    engine = create_engine(database.url.replace(f"{database.username}@", "root@"))
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            rows = connection.execute(text(f"SELECT * FROM {table}")).all()
            places[f"table {table}"] = repr(rows).encode()
    engine.dispose()
    for number, result in enumerate(outputs):
        places[f"output {number}"] = (result.out + result.err).encode()
    assert len(places) > 20, "the search looked at the run's files, objects and rows"
    return [place for place, data in places.items() for c in canaries if c.encode() in data]

"""The README's "Vertex AI Pipelines" section, walked on the team stack (MariaDB, the S3
emulator) against tests/fake_vertex_pipelines.py, a FAKE Vertex AI whose pipeline jobs run
with kfp.local as the README's service account. ``gcloud`` is stood in for by the same call
on the fake.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from conftest import wait_for
from fake_gce import FakeGce
from fake_http import requests_text, serve
from fake_vertex_pipelines import ENDED, FakeVertexPipelines
from readme import Command, blocks, commands
from test_readme import (  # noqa: F401 - team_servers is a fixture
    MYSQL_PASSWORD,
    runnable,
    team_servers,
    walk_of,
    write_readme_notebook,
)
from test_readme_operators import as_typed
from vm_sandbox import gce  # noqa: F401 - its fixture: Google credentials for a fake

SECTION = "Vertex AI Pipelines"
RUNNER = "pipelines@my-project.iam.gserviceaccount.com"


@pytest.mark.kernel
def test_vertex_pipelines(
    project: Path,
    team_servers: dict[str, str],  # noqa: F811 - the fixture imported above
    gce: FakeGce,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_file = Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"])
    # the README's bucket takes the AWS credential chain: on Vertex AI, the tasks' own identity
    identity = {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
    vertex = FakeVertexPipelines(
        "my-project", "europe-west4", tmp_path / "vertex-jobs", key_file, task_environment=identity
    )
    vertex.secret_readers.add(RUNNER)

    def gcloud_secrets_create(command: Command) -> None:
        """Stands in for `gcloud secrets create NAME --data-file=- <<< JSON`, on the fake."""
        data = command.words[command.words.index("<<<") + 1]
        vertex.secrets[f"projects/my-project/secrets/{command.words[3]}"] = as_typed(data)

    with contextlib.contextmanager(serve)(vertex):
        submitter = tmp_path / "submitter.json"
        submitter.write_text(
            json.dumps({**json.loads(key_file.read_text()), "token_uri": f"{vertex.url}/token"})
        )
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(submitter))
        endpoints = (f"--api-endpoint={vertex.url}", f"--secret-manager-endpoint={vertex.url}")
        write_readme_notebook(project)
        walk = walk_of(
            project,
            substitutions={
                **team_servers,
                "--region=europe-west4": (
                    "--region=europe-west4",
                    *endpoints,
                    "--poll-seconds=0.2",
                ),
            },
            stand_ins={"gcloud": gcloud_secrets_create},
        )
        walk.run(Command(("stackmagic", "init")))
        [team, *_] = blocks("Team stacks: a shared database and a bucket", "bash")
        walk.run_all(c for c in commands(team.text) if c.words[:2] != ("stackmagic", "pipeline"))
        try:
            walk.run_all(runnable(SECTION))
            wait_for(
                lambda: all(job.body["state"] in ENDED for job in vertex.pipeline_jobs.values()),
                timeout=300,
                what="the end of the job nobody waited for",
            )
        finally:
            vertex.stop_all()
    walk.assert_no_stale_substitution()
    runs = json.loads(walk.run(Command(("stackmagic", "pipeline", "runs", "--json"))))
    assert [(run["stack"], run["status"]) for run in runs] == [("vx", "completed")] * 2, runs
    jobs = sorted(vertex.pipeline_jobs.values(), key=lambda job: job.body["createTime"])
    assert [job.body["runtimeConfig"]["parameterValues"]["lr"] for job in jobs] == [0.2, 0.1]
    assert {job.body["serviceAccount"] for job in jobs} == {RUNNER}
    experiment = "projects/my-project/locations/europe-west4/metadataStores/default/contexts/churn"
    assert vertex.children[experiment] == [job.run_context["name"] for job in jobs]
    assert MYSQL_PASSWORD not in requests_text(vertex.requests) + "".join(walk.said)

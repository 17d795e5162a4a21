"""The Jupyter server extension's REST API, on a real Jupyter server (pytest-jupyter).

The fixtures come from pytest-jupyter, imported here only: its autouse
fixtures (an event loop, a server cleanup) then serve this module's tests alone.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import snapshot
from jupyter_server.auth import AllowAllAuthorizer, Authorizer
from pytest_jupyter.jupyter_server import *  # noqa: F403 - the jp_* fixtures
from tornado.httpclient import HTTPClientError
from tornado.web import RequestHandler

from notebooks import write_notebook
from stackmagic.component_type import ComponentType
from stackmagic.registry import Registry
from stackmagic.server.handlers import routes

SECRET_CANARY = "CANARY-api-" + secrets.token_hex(6)


@pytest.fixture
def authorizer(request: pytest.FixtureRequest) -> type[Authorizer]:
    """Who may do what on the server: everyone everything, unless a test gives its own."""
    return getattr(request, "param", AllowAllAuthorizer)


@pytest.fixture
def jp_server_config(authorizer: type[Authorizer]) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"stackmagic.server": True},
            "authorizer_class": authorizer,
        }
    }


@pytest.fixture
def api(jp_fetch: Any, jp_asyncio_loop: Any, jp_root_dir: Path, home: Path) -> Any:
    """Call ``/stackmagic/api/...`` as an authenticated client; returns (status, JSON)."""
    Registry.init(jp_root_dir)

    def call(method: str, *path: str, body: Any = None, **query: str) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"method": method, "params": query}
        if body is not None:
            kwargs["body"] = body if isinstance(body, str) else json.dumps(body)
        elif method in ("POST", "PUT"):
            kwargs["body"] = "{}"
        try:
            response = jp_asyncio_loop.run_until_complete(
                jp_fetch("stackmagic", "api", *path, **kwargs)
            )
        except HTTPClientError as error:
            response = error.response
        call.seen.append(response.body.decode())
        return response.code, json.loads(response.body)

    call.seen = []
    return call


def test_stacks_components_and_flavors_through_the_api(api: Any, jp_root_dir: Path) -> None:
    status, stacks = api("GET", "stacks")
    assert status == 200 and [(s["name"], s["active"]) for s in stacks] == [("default", True)]

    status, created = api(
        "POST",
        "components",
        "artifact-store",
        body={
            "name": "bucket",
            "flavor": "s3",
            "options": {
                "path": "s3://team/runs",
                "secret-access-key": SECRET_CANARY,
                "anonymous": False,
            },
        },
    )
    assert status == 201, created
    status, local = api(
        "POST",
        "components",
        "artifact-store",
        body={"name": "here", "flavor": "local", "options": {"path": "store"}},
    )
    assert status == 201 and local["options"]["path"] == str(jp_root_dir / "store"), (
        "a relative path is the server folder's"
    )
    status, listed = api("GET", "components", "artifact-store")
    assert status == 200
    bucket = next(c for c in listed if c["name"] == "bucket")
    assert bucket["flavor"] == "s3" and bucket["options"]["secret_access_key"] == "********"
    status, described = api("GET", "components", "artifact-store", "bucket")
    assert status == 200 and described["options"]["path"] == "s3://team/runs"

    status, stack = api(
        "POST",
        "stacks",
        body={
            "name": "team",
            "metadata_store": "default",
            "artifact_store": "bucket",
            "orchestrator": "default",
        },
    )
    assert status == 201, stack
    status, active = api("PUT", "active-stack", body={"name": "team"})
    assert status == 200 and active["name"] == "team"
    assert Registry.open(jp_root_dir).active_stack_name() == "team", "the CLI's registry agrees"
    status, got = api("GET", "active-stack")
    assert got["active_stack"] == "team"
    status, one = api("GET", "stacks", "team")
    members = {c["type"]: c for c in one["components"]}
    assert status == 200 and members["artifact-store"]["name"] == "bucket"
    assert members["artifact-store"]["options"]["secret_access_key"] == "********"

    status, flavors = api("GET", "flavors")
    assert status == 200 and set(flavors) == {
        "artifact-store",
        "metadata-store",
        "orchestrator",
        "step-operator",
        "experiment-tracker",
    }
    kubeflow = next(f for f in flavors["orchestrator"] if f["flavor"] == "kubeflow")
    token = next(o for o in kubeflow["options"] if o["name"] == "token")
    assert token["secret"] is True and token["default"] is None, "forms mask secret inputs"

    assert all(SECRET_CANARY not in body for body in api.seen), "no response holds a secret"


def test_runs_are_listed_and_described(
    api: Any, jp_root_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stackmagic

    status, runs = api("GET", "runs")
    assert status == 200 and runs == []
    monkeypatch.chdir(jp_root_dir)
    notebook = write_notebook(
        jp_root_dir / "small.ipynb", "%%step one\nvalue = 41", "%%step two\nanswer = value + 1"
    )
    finished = stackmagic.run(notebook)
    status, runs = api("GET", "runs", limit="5")
    assert status == 200 and [r["id"] for r in runs] == [finished.id]
    status, run = api("GET", "runs", finished.id[:15])
    assert status == 200 and run["status"] == "completed"
    assert [s["name"] for s in run["steps"]] == ["one", "two"]
    assert all(s["notebook"] for s in run["steps"]), "a link to each executed step notebook"
    status, executed = api("GET", "runs", finished.id, "steps", "two", "notebook")
    assert status == 200 and executed["nbformat"] == 4
    sources = ["".join(cell["source"]) for cell in executed["cells"]]
    assert any("answer = value + 1" in source for source in sources), sources
    status, answer = api("GET", "runs", finished.id, "steps", "three", "notebook")
    assert status == 404 and "has no step 'three'" in answer["message"]

    # A record altered to name a file outside the store (a shared database can be) is refused:
    # the canary search with the traversal attack, aimed at the per-user file of secrets.
    status, _ = api(
        "POST",
        "components",
        "metadata-store",
        body={
            "name": "team",
            "flavor": "mysql",
            "options": {"host": "db", "database": "ml", "password": SECRET_CANARY},
        },
    )
    assert status == 201
    secrets_file = home / "secrets.json"
    assert SECRET_CANARY in secrets_file.read_text()
    database = sqlite3.connect(jp_root_dir / ".stackmagic" / "metadata.db")
    store_root = run["steps"][1]["notebook"].split(f"/small/{finished.id}/")[0]
    climbs = "../" * len(Path(store_root).relative_to(Path(store_root).anchor).parts)
    for altered in (
        f"{store_root}/{climbs}{secrets_file.relative_to(secrets_file.anchor)}",
        f"{store_root}/small/../../../{secrets_file.name}",
        str(secrets_file),
        f"file://{secrets_file}",
    ):
        with database:
            database.execute(
                "UPDATE step_runs SET notebook_uri = ? WHERE run_id = ? AND name = 'two'",
                (altered, finished.id),
            )
        status, answer = api("GET", "runs", finished.id, "steps", "two", "notebook")
        assert status == 400 and "is not in the artifact store" in answer["message"], altered
        for route in (("runs",), ("runs", finished.id)):
            assert api("GET", *route)[0] == 200
    assert not any(SECRET_CANARY in body for body in api.seen), "no response holds a secret"


def test_a_stack_and_a_component_are_deleted_through_the_api(api: Any, jp_root_dir: Path) -> None:
    assert (
        api(
            "POST",
            "components",
            "artifact-store",
            body={"name": "here", "flavor": "local", "options": {"path": "store"}},
        )[0]
        == 201
    )
    assert (
        api(
            "POST",
            "stacks",
            body={
                "name": "mine",
                "metadata_store": "default",
                "artifact_store": "here",
                "orchestrator": "default",
            },
        )[0]
        == 201
    )
    status, answer = api("DELETE", "components", "artifact-store", "here")
    assert status == 400 and "is used by stack mine" in answer["message"], answer
    assert api("DELETE", "stacks", "mine")[0] == 200
    assert api("DELETE", "components", "artifact-store", "here")[0] == 200
    registry = Registry.open(jp_root_dir)
    assert [stack.name for stack in registry.stacks()] == ["default"]
    assert [c.name for c in registry.components(ComponentType.ARTIFACT_STORE)] == ["default"]


def test_a_run_started_through_the_api_goes_on_in_the_background(
    api: Any, jp_root_dir: Path
) -> None:
    write_notebook(
        jp_root_dir / "slow.ipynb",
        "%%step nap\nimport time\ntime.sleep(2)\nvalue = x",
        parameters="x = 1",
    )
    status, started = api("POST", "runs", body={"notebook": "slow.ipynb", "parameters": {"x": 5}})
    assert status == 202 and started["status"] == "running", started
    status, early = api("GET", "runs", started["id"])
    assert status == 200 and early["status"] == "running", "the answer came before the run ended"
    deadline = time.monotonic() + 60
    while (run := api("GET", "runs", started["id"])[1])["status"] == "running":
        assert time.monotonic() < deadline, "the run never ended"
        time.sleep(0.5)
    assert run["status"] == "completed" and run["parameters"] == {"x": 5}

    for body, code, message in (
        ({"notebook": "missing.ipynb"}, 404, "no notebook missing.ipynb"),
        (
            {"notebook": "slow.ipynb", "parameters": {"y": 1}},
            400,
            "the pipeline has no parameter 'y'",
        ),
        ({"notebook": "../outside.ipynb"}, 400, "inside the server's folder"),
        (
            '{"notebook": "slow.ipynb", "parameters": {"x": NaN}}',
            400,
            "holds NaN, which is not JSON",
        ),
        ('{"notebook": "slow.ipynb", "parameters": {"x": 1e999}}', 400, "which JSON cannot keep"),
    ):
        status, answer = api("POST", "runs", body=body)
        assert status == code and message in answer["message"], answer
    status, runs = api("GET", "runs")
    assert status == 200 and len(runs) == 1, "nothing recorded for a refused body"


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        (
            "POST",
            ("components", "orchestrator"),
            {"name": "x", "flavor": "nope"},
            400,
            "unknown orchestrator flavor 'nope'",
        ),
        ("POST", ("components", "orchestrator"), "not json", 400, "not JSON"),
        (
            "POST",
            ("components", "metadata-store"),
            {
                "name": "db",
                "flavor": "mysql",
                "options": {"host": "h", "database": "d", "password": "-"},
            },
            400,
            "--password: give the value itself, or env:VARIABLE",
        ),
        ("POST", ("stacks",), {"name": "s"}, 400, "arguments are required: -m/--metadata-store"),
        ("PUT", ("active-stack",), {"name": "nowhere"}, 400, "no stack named 'nowhere'"),
        (
            "PUT",
            ("active-stack",),
            {"name": "--help"},
            400,
            "'name' '--help' cannot start with '-'",
        ),
        ("GET", ("stacks", "--json"), None, 400, "the stack '--json' cannot start with '-'"),
        (
            "POST",
            ("components", "metadata-store"),
            {
                "name": "db",
                "flavor": "mysql",
                "options": {"host": "h", "database": "d", "password": ["-"]},
            },
            400,
            "--password: give text, a number or a boolean, not a list",
        ),
        (
            "POST",
            ("components", "artifact-store"),
            {"name": "a", "flavor": "local", "options": {"path": {"a": "b"}}},
            400,
            "--path: give text, a number or a boolean, not an object",
        ),
        (
            "POST",
            ("components", "orchestrator"),
            {"name": "o", "flavor": "local", "options": {"max_workers": 100000000000000000000000}},
            400,
            "--max-workers: expects 0 (automatic) or a number of steps from 1 to 256",
        ),
        (
            "POST",
            ("components", "orchestrator"),
            {"name": "o", "flavor": "local", "options": {"max_workers": 2.5}},
            400,
            "--max-workers expects a whole number, not '2.5'",
        ),
        (
            "POST",
            ("components", "artifact-store"),
            {"name": "a", "flavor": "local", "options": {"path=/elsewhere": "x"}},
            400,
            "'path=/elsewhere' is no option name",
        ),
        (
            "POST",
            ("runs",),
            {"notebook": "n.ipynb", "stack": ["a"]},
            400,
            "give 'stack', a non-empty",
        ),
        ("POST", ("runs",), {"notebook": "n\u0000.ipynb"}, 400, "holds a NUL or line break"),
        (
            "POST",
            ("components", "artifact-store"),
            {"name": "a", "flavor": "local", "options": {"path": "here\nthere"}},
            400,
            "--path: a NUL or line break is no part of an option's value",
        ),
        ("DELETE", ("stacks", "default"), None, 400, "cannot be deleted"),
        ("GET", ("components", "artifact-store", "ghost"), None, 404, "no artifact store named"),
        ("GET", ("runs", "20990101"), None, 404, "names no run"),
    ],
)
def test_bad_requests_get_a_status_and_one_line(
    api: Any, method: str, path: tuple[str, ...], body: Any, status: int, message: str
) -> None:
    code, answer = api(method, *path, body=body)
    assert code == status, answer
    assert message in answer["message"] and "\n" not in answer["message"]


def test_list_and_mapping_options_take_json_lists_and_objects(api: Any) -> None:
    status, vm = api(
        "POST",
        "components",
        "orchestrator",
        body={
            "name": "vm",
            "flavor": "aws-vm",
            "options": {"security_group_ids": ["sg-1", "sg-2"], "tags": {"team": "ml"}},
        },
    )
    assert status == 201, vm
    assert vm["options"]["security_group_ids"] == ["sg-1", "sg-2"]
    assert vm["options"]["tags"] == {"team": "ml"}


@pytest.mark.parametrize("limit", ["99999999999999999999", "0", "many"])
def test_a_runs_limit_out_of_range_is_a_400(api: Any, limit: str) -> None:
    code, answer = api("GET", "runs", limit=limit)
    assert code == 400 and "expects a whole number from 1 to 10000" in answer["message"], answer


def _every_request() -> list[tuple[str, str]]:
    """Each method of each route the extension registers, a URL path filled in for each.

    A path part that is one of several words (a component type) takes the first; any
    other, ``x``. A route or method added later is covered without a change here.
    """

    def fill(part: re.Match[str]) -> str:
        return part[1].split("|")[0] if "|" in part[1] else "x"

    found = []
    for pattern, handler, _ in routes("/", "."):
        path = re.sub(r"\(\?P<\w+>([^)]*)\)", fill, pattern).lstrip("/")
        found += [
            (method, path)
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if getattr(handler, method.lower()) is not getattr(RequestHandler, method.lower())
        ]
    return found


EVERY_REQUEST = _every_request()


@pytest.mark.parametrize("method, path", EVERY_REQUEST, ids=[" ".join(r) for r in EVERY_REQUEST])
def test_every_route_refuses_a_request_without_jupyters_token(
    api: Any,
    http_server_client: Any,
    jp_base_url: str,
    jp_asyncio_loop: Any,
    jp_root_dir: Path,
    method: str,
    path: str,
) -> None:
    """The XSRF check is passed (cookie and header match): only the missing login refuses it."""
    before = snapshot(jp_root_dir / ".stackmagic")
    with pytest.raises(HTTPClientError) as refused:
        jp_asyncio_loop.run_until_complete(
            http_server_client.fetch(
                f"{jp_base_url}{path}",
                method=method,
                body=None if method in ("GET", "DELETE") else json.dumps({"name": "default"}),
                headers={"Cookie": "_xsrf=same-on-both", "X-XSRFToken": "same-on-both"},
            )
        )
    assert refused.value.code == 403, refused.value.response.body
    assert snapshot(jp_root_dir / ".stackmagic") == before


class RefuseEverything(Authorizer):
    """What a server whose users may do nothing (JupyterHub's roles, say) decides."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return False


@pytest.mark.parametrize("authorizer", [RefuseEverything], indirect=True)
@pytest.mark.parametrize("method, path", EVERY_REQUEST, ids=[" ".join(r) for r in EVERY_REQUEST])
def test_every_route_asks_jupyters_authorizer(
    api: Any,
    jp_root_dir: Path,
    authorizer: type,
    method: str,
    path: str,
) -> None:
    """A logged-in user whom the server's authorizer refuses gets a 403 and changes nothing."""
    before = snapshot(jp_root_dir / ".stackmagic")
    status, answer = api(method, *path.split("/")[2:])
    assert status == 403 and "is not authorized to" in answer["message"], answer
    assert snapshot(jp_root_dir / ".stackmagic") == before


def test_an_unexpected_error_is_one_line_500_that_keeps_its_details_for_the_log(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug stands in for itself here: the command raises what no handler expects."""
    import stackmagic.server.base

    def broken(words: Any) -> Any:
        raise KeyError("password=hunter2")  # an exception's text may hold anything

    monkeypatch.setattr(stackmagic.server.base, "run", broken)
    status, answer = api("GET", "stacks")
    assert status == 500
    assert answer == {
        "message": "stackmagic could not answer (KeyError); the Jupyter server's log has the details"
    }

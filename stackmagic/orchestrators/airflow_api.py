"""The few calls of Airflow's REST API (``/api/v2``) that a run or a schedule makes.

Plain HTTP with the standard library: the apache-airflow-client package would
add a dependency for six calls. Airflow 3's API takes a JWT, which
``POST /auth/token`` trades for a user's name and password (again when the
API says it expired); a token may be given instead. Each failure becomes one
line saying what to check.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..errors import StackmagicError

#: Seconds to wait for one answer.
TIMEOUT_SECONDS = 30
#: A DAG run's states once it has ended.
FINAL_STATES = {"success", "failed"}


class AirflowApi:
    def __init__(
        self, url: str, *, token: str | None = None, username: str = "", password: str = ""
    ) -> None:
        self.url = url.rstrip("/").removesuffix("/api/v2")
        self._token = token
        self._credentials = (username, password) if username else None

    # -- DAGs --------------------------------------------------------------------------

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as Airflow parsed it, or None if it has not (yet)."""
        return self._call("GET", f"/dags/{_quoted(dag_id)}", missing_ok=True)

    def load_error(self, filename: str) -> str | None:
        """Airflow's last error loading the DAG file ``filename`` (with its time), if any.

        Airflow names the file relative to its DAG bundle: ``NAME.py`` or ``.../NAME.py``.
        A user who may not see import errors sees none.
        """
        query = f"/importErrors?filename_pattern={_quoted(filename)}&limit=100"
        try:
            answer = self._call("GET", query)
        except StackmagicError:
            return None
        for error in answer.get("import_errors", []):
            if error["filename"] == filename or error["filename"].endswith("/" + filename):
                return f"{error['timestamp']} {error['stack_trace']}"
        return None

    def wait_for_dag(
        self, dag_id: str, version: str, timeout: float, where: str, *, stale: str | None
    ) -> None:
        """Until Airflow has parsed the DAG file whose description names ``version``.

        ``stale``: the file's load error before it was written, which says nothing of this
        version; a new one fails at once rather than after ``timeout``.
        """
        from .airflow_dag import file_version

        deadline = time.monotonic() + timeout
        while True:
            found = self.dag(dag_id)
            if found and file_version(found.get("description")) == version:
                return
            error = self.load_error(where.rsplit("/", 1)[-1])
            if error is not None and error != stale:
                raise StackmagicError(
                    f"Airflow could not load the DAG file {where}: "
                    f"{error.strip().splitlines()[-1]} (`airflow dags list-import-errors` "
                    "shows all of it); a missing module must be installed where Airflow runs"
                )
            if time.monotonic() > deadline:
                said = "an older version of it" if found else "no DAG of that id"
                raise StackmagicError(
                    f"Airflow has not parsed the DAG {dag_id} written to {where} within "
                    f"{timeout:.0f} s (its API shows {said}): check that its DAG processor reads "
                    "that place (`airflow dags list-import-errors` shows a file it could not "
                    "load), or give it longer with --parse-timeout"
                )
            time.sleep(1.0)

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{_quoted(dag_id)}", {"is_paused": False})

    def delete_dag(self, dag_id: str) -> None:
        """Forget the DAG and its runs; one already gone is no error."""
        self._call("DELETE", f"/dags/{_quoted(dag_id)}", missing_ok=True)

    # -- DAG runs ----------------------------------------------------------------------

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Start a DAG run now; its run id."""
        body = {"logical_date": None, "conf": conf}
        answer = self._call("POST", f"/dags/{_quoted(dag_id)}/dagRuns", body)
        return str(answer["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        answer = self._call("GET", f"/dags/{_quoted(dag_id)}/dagRuns/{_quoted(run_id)}")
        return str(answer["state"])

    def fail_run(self, dag_id: str, run_id: str) -> None:
        """Mark the DAG run failed: Airflow stops its running tasks and starts no more."""
        self._call(
            "PATCH", f"/dags/{_quoted(dag_id)}/dagRuns/{_quoted(run_id)}", {"state": "failed"}
        )

    def run_url(self, dag_id: str, run_id: str) -> str:
        return f"{self.url}/dags/{_quoted(dag_id)}/runs/{_quoted(run_id)}"

    # -- HTTP --------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        missing_ok: bool = False,
        renewed: bool = False,
    ) -> Any:
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Authorization": f"Bearer {self._bearer()}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            if error.code == 404 and missing_ok:
                return None
            if error.code == 401 and self._credentials and not renewed:
                self._token = None  # expired (a followed run outlives it): a new one, once
                return self._call(method, path, body, missing_ok=missing_ok, renewed=True)
            raise StackmagicError(
                f"Airflow's API at {self.url} refused {method} {path}: HTTP {error.code} "
                f"{_detail(error)}"
                + (" (check --username/--password or --token)" if error.code in (401, 403) else "")
            ) from None
        except OSError as error:
            raise _unreachable(self.url, error) from None
        return json.loads(text) if text else None

    def _bearer(self) -> str:
        if self._token is None and self._credentials is not None:
            username, password = self._credentials
            request = urllib.request.Request(
                f"{self.url}/auth/token",
                method="POST",
                data=json.dumps({"username": username, "password": password}).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                    self._token = str(json.load(response)["access_token"])
            except urllib.error.HTTPError as error:
                raise StackmagicError(
                    f"Airflow at {self.url} refused the user {username!r}: HTTP {error.code}; "
                    "check --username and --password"
                ) from None
            except OSError as error:
                raise _unreachable(self.url, error) from None
        return self._token or ""


def _quoted(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _detail(error: urllib.error.HTTPError) -> str:
    """Airflow's own reason, from its JSON body when it has one."""
    try:
        detail = json.loads(error.read().decode()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return f"({detail})" if isinstance(detail, str) else f"({json.dumps(detail)})" if detail else ""


def _unreachable(url: str, error: OSError) -> StackmagicError:
    reason = getattr(error, "reason", error)
    return StackmagicError(
        f"cannot reach Airflow's API at {url} ({reason}); check --api-url and that its "
        "API server runs"
    )

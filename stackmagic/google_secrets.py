"""Reading a Secret Manager secret with the identity of where the code runs (a VM, a job).

Application Default Credentials: a VM's or a job's service account, or the
key file ``GOOGLE_APPLICATION_CREDENTIALS`` names. Only ``google-auth`` is
needed, so a job's image does not need Google's client libraries.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

from .errors import StackmagicError

SECRET_MANAGER = "https://secretmanager.googleapis.com"


def secret_resource(name: str, project: str) -> str:
    """``projects/P/secrets/NAME`` for a secret given by its name in ``project``, or in full."""
    return name if name.startswith("projects/") else f"projects/{project}/secrets/{name}"


def read_latest_version(resource: str, endpoint: str = "") -> str:
    """The text of the newest version of the secret ``resource`` (``projects/P/secrets/S``)."""
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    base = (endpoint or SECRET_MANAGER).rstrip("/")
    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        answer = AuthorizedSession(credentials).get(
            f"{base}/v1/{resource}/versions/latest:access", timeout=30
        )
    except Exception as error:
        raise StackmagicError(
            f"cannot read the secret {resource} from Secret Manager "
            f"({type(error).__name__}: {error})"
        ) from None
    if answer.status_code != 200:
        reason = (
            answer.json().get("error", {}).get("message", answer.reason)
            if answer.content
            else answer.reason
        )
        raise StackmagicError(
            f"Secret Manager refused to give {resource} ({answer.status_code}: {reason}); "
            "grant the identity reading it roles/secretmanager.secretAccessor on the secret"
        )
    return base64.b64decode(answer.json()["payload"]["data"]).decode()


def take_store_secrets(location: Mapping[str, str] | None, stores: Mapping[str, Any]) -> None:
    """Put the stores' secrets from the secret at ``location`` (its ``name`` and ``endpoint``)
    into this process's environment, where the stores' description reads them; no location:
    they are there already."""
    from .stores.portable import wanted_secrets

    if location:
        text = read_latest_version(location["name"], location.get("endpoint", ""))
        os.environ.update(wanted_secrets(location["name"], text, stores))

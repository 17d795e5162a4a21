"""A VM, played on this machine: its startup script in a sandbox folder, and Google's fake.

The startup script a cloud-VM run gets runs here as a VM image with Python and
stackmagic runs it: in a folder of its own, without the test's stackmagic
settings, with the credentials the VM's identity would give it. Compute
Engine and Secret Manager are tests/fake_gce.py, a FAKE endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from conftest import BIN
from fake_gce import FakeGce
from fake_http import serve

GCP_PROJECT = "demo-project"
#: what an instance profile (or service account) gives a real VM for the S3 emulator
INSTANCE_IDENTITY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def vm_environment(folder: Path, identity: Mapping[str, str] = INSTANCE_IDENTITY) -> dict[str, str]:
    """A VM's: its own folder, no stackmagic or AWS settings of the test, its identity's."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("STACKMAGIC_", "AWS_"))}
    environment.update(
        {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(folder),
            "STACKMAGIC_HOME": str(folder / "stackmagic-home"),
            **identity,
            # never the machine's own poweroff: the test sees whether the script wanted one
            "STACKMAGIC_POWEROFF": f"touch {folder / 'powered-off'}",
        }
    )
    return environment


def run_startup_script(
    script: str,
    folder: Path,
    identity: Mapping[str, str] = INSTANCE_IDENTITY,
) -> subprocess.CompletedProcess[str]:
    """The script as the VM runs it, to its end."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["bash", "-c", script],
        cwd=folder,
        env=vm_environment(folder, identity),
        text=True,
        capture_output=True,
        timeout=600,
    )


def start_startup_script(
    script: str,
    folder: Path,
    identity: Mapping[str, str] = INSTANCE_IDENTITY,
) -> subprocess.Popen[str]:
    """The script, started in a session of its own (so it can be taken back like a VM)."""
    folder.mkdir(parents=True)
    return subprocess.Popen(
        ["bash", "-c", script],
        cwd=folder,
        env=vm_environment(folder, identity),
        text=True,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def gce(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGce]:
    """The fake, and Application Default Credentials whose token comes from it (nothing else)."""
    with contextlib.contextmanager(serve)(FakeGce()) as fake:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        credentials = tmp_path / "service-account.json"  # a key made here, for the fake only
        credentials.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": GCP_PROJECT,
                    "private_key_id": "test",
                    "private_key": key.decode(),
                    "client_email": f"runner@{GCP_PROJECT}.iam.gserviceaccount.com",
                    "client_id": "1",
                    "token_uri": f"{fake.url}/token",
                }
            )
        )
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
        monkeypatch.setenv("NO_GCE_CHECK", "True")  # never ask a metadata server
        yield fake

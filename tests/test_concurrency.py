"""Several processes at once: nothing lost, and a killed writer never leaves a broken file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import BIN

WRITERS = 8


def test_eight_processes_registering_at_once_lose_nothing(project: Path, terminal) -> None:
    terminal("init")
    processes = [
        subprocess.Popen(
            [
                str(BIN / "stackmagic"),
                "artifact-store",
                "register",
                f"store{i}",
                "--type=s3",
                f"--path=s3://bucket/{i}",
                f"--secret-access-key=key-{i}",
            ],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WRITERS)
    ]
    for process in processes:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    listing = json.loads(terminal("artifact-store", "list", "--json").out)
    assert {item["name"] for item in listing} == {"default", *(f"store{i}" for i in range(WRITERS))}
    secrets = json.loads((Path(os.environ["STACKMAGIC_HOME"]) / "secrets.json").read_text())
    assert sorted(entry["value"] for entry in secrets.values()) == sorted(
        f"key-{i}" for i in range(WRITERS)
    )


CHURN = """
import itertools, sys
from pathlib import Path
from stackmagic.flavors import ComponentType
from stackmagic.registry import Registry
registry = Registry.open()
for i in itertools.count():
    name = f"{sys.argv[1]}-{i}"  # a killed writer's store may stay: the next picks other names
    registry.register_component(ComponentType.ARTIFACT_STORE, name, "local", {"path": "x" * 4000}, Path.cwd())
    print("registered", flush=True)
    registry.delete_component(ComponentType.ARTIFACT_STORE, name)
    print("deleted", flush=True)
"""


def test_killed_writer_never_leaves_a_broken_file(project: Path, terminal) -> None:
    terminal("init")
    config = project / ".stackmagic" / "config.json"
    for attempt in range(10):
        before = config.stat().st_mtime_ns
        writer = subprocess.Popen(
            [sys.executable, "-c", CHURN, f"writer{attempt}"], cwd=project, stdout=subprocess.PIPE
        )
        assert writer.stdout is not None
        # killed in the write after its 1st, 3rd, ... 19th: after a registration or a deletion
        for _ in range(2 * attempt + 1):
            assert writer.stdout.readline().strip() in (b"registered", b"deleted")
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert config.stat().st_mtime_ns != before, "the writer wrote before it was killed"
        state = json.loads(config.read_text())
        assert state["stacks"]["default"]["artifact-store"] == "default"
    result = terminal("artifact-store", "register", "after", "--type=local")
    assert result.code == 0, result.err
    assert "after" in json.loads(config.read_text())["components"]["artifact-store"]
    leftovers = [p.name for p in config.parent.iterdir() if p.name.startswith(".config.json.")]
    assert leftovers == [], "the next write sweeps temporary files of killed writers"

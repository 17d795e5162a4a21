"""The files beside a notebook that its pipeline's bundle carries: what goes in, what stays out."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from blake3 import blake3

from stackmagic.errors import StackmagicError
from stackmagic.notebook.sources import SourceFiles, collect_sources


def write(root: Path, relative: str, content: str | bytes = "x = 1\n") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def content_hash(content: str | bytes) -> str:
    return blake3(content.encode() if isinstance(content, str) else content).hexdigest()


def paths(folder: Path, **limits: int) -> list[str]:
    return list(collect_sources(folder, **limits).files)


def test_helper_module_subpackage_and_csv_are_collected_with_their_hashes(tmp_path: Path) -> None:
    write(tmp_path, "analysis.ipynb", "{}")
    write(tmp_path, "helpers.py", "def double(x):\n    return 2 * x\n")
    write(tmp_path, "features/__init__.py", "")
    write(tmp_path, "features/scaling.py", "SCALE = 3\n")
    write(tmp_path, "data/labels.csv", b"id,label\n1,cat\n2,dog\n")

    sources = collect_sources(tmp_path)

    assert sources.root == tmp_path.resolve()
    assert sources.files == {
        "data/labels.csv": content_hash(b"id,label\n1,cat\n2,dog\n"),
        "features/__init__.py": content_hash(""),
        "features/scaling.py": content_hash("SCALE = 3\n"),
        "helpers.py": content_hash("def double(x):\n    return 2 * x\n"),
    }
    assert list(sources.files) == sorted(sources.files)
    assert sources.left_out == {} and sources.warnings == []


def test_hidden_entries_caches_and_notebooks_are_left_out(tmp_path: Path) -> None:
    write(tmp_path, "helpers.py")
    for relative in (
        ".env",
        ".git/config",
        ".stackmagic/registry.json",
        ".ipynb_checkpoints/analysis-checkpoint.ipynb",
        ".venv/lib/site.py",
        "features/.secret.py",
        "__pycache__/helpers.cpython-311.pyc",
        "features/__pycache__/scaling.cpython-311.pyc",
        "stray.pyc",
        "analysis.ipynb",
        "drafts/other.ipynb",
    ):
        write(tmp_path, relative)

    assert paths(tmp_path) == ["helpers.py"]


def test_root_gitignore_with_folder_pattern_glob_negation_and_anchor(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "build/\n*.csv\n!keep.csv\n/secrets.py\n")
    write(tmp_path, "build/lib.py")
    write(tmp_path, "src/build/generated.py")
    write(tmp_path, "build.py", "a file named like a folder pattern stays")
    write(tmp_path, "raw.csv")
    write(tmp_path, "data/raw.csv")
    write(tmp_path, "keep.csv")
    write(tmp_path, "data/keep.csv")
    write(tmp_path, "secrets.py")
    write(tmp_path, "src/secrets.py")

    assert paths(tmp_path) == ["build.py", "data/keep.csv", "keep.csv", "src/secrets.py"]


def test_nested_gitignore_applies_relative_to_its_folder(tmp_path: Path) -> None:
    write(tmp_path, "pipeline/.gitignore", "/cache.py\n*.tmp\n")
    write(tmp_path, "pipeline/cache.py")
    write(tmp_path, "pipeline/sub/cache.py")
    write(tmp_path, "pipeline/sub/scratch.tmp")
    write(tmp_path, "cache.py")
    write(tmp_path, "scratch.tmp")

    assert paths(tmp_path) == ["cache.py", "pipeline/sub/cache.py", "scratch.tmp"]


def test_stackmagicignore_brings_back_what_git_ignores_and_ignores_more(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "*.csv\nmodels/\n")
    write(tmp_path, ".stackmagicignore", "!labels.csv\n!models/\nnotes/\n")
    write(tmp_path, "features/.gitignore", "vocabulary.csv\n")
    write(tmp_path, "labels.csv")
    write(tmp_path, "raw.csv")
    write(tmp_path, "features/labels.csv")
    write(tmp_path, "features/vocabulary.csv")
    write(tmp_path, "models/tokenizer.json")
    write(tmp_path, "notes/ideas.md")
    write(tmp_path, "helpers.py")

    assert paths(tmp_path) == [
        "features/labels.csv",
        "helpers.py",
        "labels.csv",
        "models/tokenizer.json",
    ]


def test_an_excluded_folder_inside_the_tree_is_left_out(tmp_path: Path) -> None:
    write(tmp_path, "helpers.py")
    write(tmp_path, "artifacts/run-1/model.pkl")
    write(tmp_path, "reports/summary.txt")
    write(tmp_path, "reports/latest.txt")

    sources = collect_sources(
        tmp_path, exclude=[tmp_path / "artifacts", tmp_path / "reports" / "latest.txt"]
    )

    assert list(sources.files) == ["helpers.py", "reports/summary.txt"]


def test_a_file_over_the_size_limit_is_left_out_and_named_in_a_warning(tmp_path: Path) -> None:
    write(tmp_path, "helpers.py", "x = 1\n")
    write(tmp_path, "data/big.csv", b"0" * 2048)
    write(tmp_path, "model.bin", b"1" * 4096)

    sources = collect_sources(tmp_path, max_file_bytes=1024)

    assert list(sources.files) == ["helpers.py"]
    assert list(sources.left_out) == ["data/big.csv", "model.bin"]
    assert sources.warnings == [
        "left out of the bundle, larger than 1 KB: data/big.csv, model.bin (steps off this "
        "machine will not see them; list them in .stackmagicignore to silence this)"
    ]


def test_a_left_out_file_still_counts_in_the_digest(tmp_path: Path) -> None:
    """Steps on this machine read it from the notebook's folder: a change must re-run them."""
    big = write(tmp_path, "data/big.csv", b"0" * 2048)
    before = collect_sources(tmp_path, max_file_bytes=1024).digest
    big.write_bytes(b"1" * 4096)
    assert collect_sources(tmp_path, max_file_bytes=1024).digest != before


def test_a_warning_names_five_large_files_and_counts_the_rest(tmp_path: Path) -> None:
    for number in range(8):
        write(tmp_path, f"shard-{number}.bin", b"0" * 100)

    (warning,) = collect_sources(tmp_path, max_file_bytes=10).warnings

    assert "larger than 10 bytes: " in warning
    assert "shard-0.bin, shard-1.bin, shard-2.bin, shard-3.bin, shard-4.bin and 3 more" in warning
    assert "shard-5.bin" not in warning


@pytest.mark.parametrize(
    "files, limit, said",
    [
        ({f"module_{n}.py": b"x = 1\n" for n in range(4)}, {"max_files": 3}, "more than 3 files"),
        ({"a.bin": b"0" * 1500, "b.bin": b"0" * 1500}, {"max_total_bytes": 2048}, "more than 2 KB"),
    ],
)
def test_too_much_to_bundle_is_a_one_line_error_naming_the_folder(
    tmp_path: Path, files: dict[str, bytes], limit: dict[str, int], said: str
) -> None:
    for relative, content in files.items():
        write(tmp_path, relative, content)

    with pytest.raises(StackmagicError) as raised:
        collect_sources(tmp_path, **limit)

    message = str(raised.value)
    assert "\n" not in message
    assert said in message
    assert str(tmp_path.resolve()) in message and ".stackmagicignore" in message


def test_the_digest_changes_when_a_file_is_edited_added_removed_or_renamed(tmp_path: Path) -> None:
    helpers = write(tmp_path, "helpers.py", "SCALE = 2\n")
    write(tmp_path, "data/labels.csv", "id\n1\n")
    digests = [collect_sources(tmp_path).digest]

    helpers.write_text("SCALE = 3\n")
    digests.append(collect_sources(tmp_path).digest)
    extra = write(tmp_path, "extra.py")
    digests.append(collect_sources(tmp_path).digest)
    extra.unlink()
    helpers.write_text("SCALE = 2\n")
    assert collect_sources(tmp_path).digest == digests[0], "same files, same digest"
    (tmp_path / "data" / "labels.csv").rename(tmp_path / "data" / "targets.csv")
    digests.append(collect_sources(tmp_path).digest)

    assert len(set(digests)) == len(digests)


def test_the_digest_ignores_notebooks_and_hidden_files(tmp_path: Path) -> None:
    write(tmp_path, "helpers.py")
    notebook = write(tmp_path, "analysis.ipynb", '{"cells": []}')
    before = collect_sources(tmp_path).digest

    notebook.write_text('{"cells": [{"cell_type": "code", "source": "1"}]}')
    write(tmp_path, "drafts/other.ipynb", "{}")
    write(tmp_path, ".env", "TOKEN=abc")
    write(tmp_path, ".ipynb_checkpoints/analysis-checkpoint.ipynb", "{}")

    assert collect_sources(tmp_path).digest == before


def test_an_ignored_folder_is_not_walked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, ".gitignore", "data/\n")
    write(tmp_path, "helpers.py")
    for number in range(10):
        write(tmp_path, f"data/part-{number}/rows.csv")
        write(tmp_path, f".venv/lib/module_{number}.py")
    listed: list[str] = []
    real_scandir = os.scandir

    def recording_scandir(path: Path) -> AbstractContextManager[Iterable[os.DirEntry[str]]]:
        listed.append(Path(path).relative_to(tmp_path.resolve()).as_posix())
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", recording_scandir)

    assert paths(tmp_path, max_files=2) == ["helpers.py"]
    assert listed == ["."]


def test_the_order_the_os_lists_files_in_does_not_matter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "b.py")
    write(tmp_path, "a.py")
    write(tmp_path, "pkg/z.py")
    write(tmp_path, "pkg/y.py")
    write(tmp_path, "big.bin", b"0" * 100)
    write(tmp_path, "huge.bin", b"0" * 100)
    expected = collect_sources(tmp_path, max_file_bytes=50)
    real_scandir = os.scandir

    def reversed_scandir(path: Path) -> AbstractContextManager[Iterable[os.DirEntry[str]]]:
        with real_scandir(path) as listing:
            return contextlib.nullcontext(sorted(listing, key=lambda e: e.name, reverse=True))

    monkeypatch.setattr(os, "scandir", reversed_scandir)
    reordered = collect_sources(tmp_path, max_file_bytes=50)

    assert list(reordered.files) == list(expected.files) == ["a.py", "b.py", "pkg/y.py", "pkg/z.py"]
    assert list(reordered.left_out) == list(expected.left_out) == ["big.bin", "huge.bin"]
    assert reordered.digest == expected.digest


def test_a_symlinked_folder_is_not_followed_but_a_symlinked_file_is_read(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    write(elsewhere, "dataset/rows.csv")
    shared = write(elsewhere, "shared.py", "SHARED = True\n")
    write(project, "helpers.py")
    (project / "dataset").symlink_to(elsewhere / "dataset", target_is_directory=True)
    (project / "shared.py").symlink_to(shared)
    (project / "loop").symlink_to(project, target_is_directory=True)

    sources = collect_sources(project)

    assert list(sources.files) == ["helpers.py", "shared.py"]
    assert sources.files["shared.py"] == content_hash("SHARED = True\n")


def test_copy_to_reproduces_the_tree_byte_for_byte(tmp_path: Path) -> None:
    project, bundle = tmp_path / "project", tmp_path / "bundle"
    contents = {
        "helpers.py": b"def double(x):\n    return 2 * x\n",
        "features/__init__.py": b"",
        "features/deep/scaling.py": b"SCALE = 3\r\n",
        "data/weights.bin": bytes(range(256)) * 4,
    }
    for relative, content in contents.items():
        write(project, relative, content)
    run_script = write(project, "run.sh", b"#!/bin/sh\necho hi\n")
    run_script.chmod(0o755)
    write(project, ".gitignore", "scratch/\n")
    write(project, "scratch/notes.txt")

    sources = collect_sources(project)
    sources.copy_to(bundle)

    copied = {
        path.relative_to(bundle).as_posix(): path.read_bytes()
        for path in bundle.rglob("*")
        if path.is_file()
    }
    assert copied == {**contents, "run.sh": b"#!/bin/sh\necho hi\n"}
    assert os.access(bundle / "run.sh", os.X_OK), "a script stays executable"
    assert collect_sources(bundle).digest == sources.digest


def test_copy_to_refuses_a_file_edited_since_it_was_hashed(tmp_path: Path) -> None:
    project = tmp_path / "project"
    helpers = write(project, "helpers.py", "SCALE = 2\n")
    sources: SourceFiles = collect_sources(project)
    helpers.write_text("SCALE = 3\n")

    with pytest.raises(StackmagicError, match="helpers.py changed"):
        sources.copy_to(tmp_path / "bundle")

"""The artifact store's contract and its materializers.

Every test of the ``store`` fixture runs on each flavor's real filesystem: a
local folder, and buckets on the S3 (moto), GCS (gcp-storage-emulator) and
Azure Blob (Azurite) emulators, through s3fs, gcsfs and adlfs.
"""

from __future__ import annotations

import enum
import io
import json
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from blake3 import blake3
from fsspec.implementations.memory import MemoryFileSystem
from services import storage_options

from stackmagic.errors import StackmagicError
from stackmagic.stores.artifacts import ArtifactInfo, ArtifactStore
from stackmagic.stores.materializers import (
    _installed_materializers,
    all_materializers,
    materializer_by_extension,
    materializer_for,
)

MiB = 1 << 20


SERVERS = {"s3": "s3_server", "gcs": "gcs_server", "azure": "azurite_server"}
#: fsspec options that are secrets: given as the store's secret options, as the flavors do.
SECRET_OPTIONS = {"secret", "connection_string"}


@pytest.fixture(params=["local", "s3", "gcs", "azure"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    kind = request.param
    if kind == "local":
        return ArtifactStore(str(tmp_path / "artifacts"))
    url = request.getfixturevalue("bucket")(kind)
    options = storage_options(kind, request.getfixturevalue(SERVERS[kind]))
    secrets = {name: options.pop(name) for name in SECRET_OPTIONS & set(options)}
    return ArtifactStore(url, options, secret_options=secrets)


@pytest.fixture
def memory_store() -> Iterator[ArtifactStore]:
    """A store on fsspec's in-process filesystem, emptied before and after."""
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]
    yield ArtifactStore("memory://team-bucket/pipelines")
    MemoryFileSystem.store.clear()
    MemoryFileSystem.pseudo_dirs[:] = [""]


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def stored_files(store: ArtifactStore) -> list[str]:
    """Every file in the store, temporary ones included, relative to its root."""
    return [uri[len(store.root) + 1 :] for uri in store.find(store.root)]


def one_line_error(error: pytest.ExceptionInfo[StackmagicError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- each materializer keeps values as they were ---------------------------------------------


def test_bytes_are_stored_as_they_are(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 3
    info = store.save(data, store.uri("pipe", "run1", "fetch", "raw"))
    assert (info.materializer, info.uri) == ("bytes", store.uri("pipe", "run1", "fetch", "raw.bin"))
    assert store.read_bytes(info.uri) == data
    loaded = store.load(info.uri)
    assert loaded == data and type(loaded) is bytes


@pytest.mark.parametrize(
    "value",
    [
        {"learning_rate": 0.01, "epochs": 10, "name": "baseline", "tags": None, "done": False},
        [1, 2.5, "three", None, True],
        {"layers": [{"units": 64, "activation": "relu"}, {"units": [1, [2, [3, {}]]]}], "e": []},
        "just a string",
        12345678901234567890123,
    ],
    ids=["dict", "list", "nested", "str", "big-int"],
)
def test_plain_data_is_stored_as_json(store: ArtifactStore, value: object) -> None:
    info = store.save(value, store.uri("params"))
    assert info.materializer == "json" and info.uri.endswith("params.json")
    assert json.loads(store.read_bytes(info.uri)) == value  # any tool can read it
    loaded = store.load(info.uri)
    assert loaded == value and type(loaded) is type(value)


def test_json_keeps_special_floats(store: ArtifactStore) -> None:
    value = {"nan": float("nan"), "inf": float("inf"), "minus_zero": -0.0, "tiny": 5e-324}
    loaded = store.load(store.save(value, store.uri("metrics")).uri)
    assert math.isnan(loaded["nan"]) and loaded["inf"] == math.inf
    assert math.copysign(1.0, loaded["minus_zero"]) == -1.0 and loaded["tiny"] == 5e-324


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.int8).reshape(3, 4),
        np.asfortranarray(np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)),
        np.array([True, False, True]),
        np.array(["2024-01-01", "2024-02-29"], dtype="datetime64[D]"),
        np.array([1 + 2j, 3 - 4j]),
        np.array(["ab", "cde"]),
        np.array([(1, 2.0)], dtype=[("id", "<i4"), ("score", "<f8")]),
        np.empty((0, 3)),
    ],
    ids=[
        "int8",
        "float32-fortran",
        "bool",
        "datetime",
        "complex",
        "unicode",
        "structured",
        "empty",
    ],
)
def test_arrays_are_stored_as_npy(store: ArtifactStore, array: np.ndarray) -> None:
    info = store.save(array, store.uri("features"))
    assert info.materializer == "numpy" and info.uri.endswith("features.npy")
    assert np.array_equal(
        np.load(io.BytesIO(store.read_bytes(info.uri)), allow_pickle=False), array
    )  # readable without us
    loaded = store.load(info.uri)
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    assert np.array_equal(loaded, array)


def test_object_arrays_are_pickled_not_npy(store: ArtifactStore) -> None:
    array = np.array([{"a": 1}, [2]], dtype=object)
    info = store.save(array, store.uri("ragged"))
    assert info.materializer == "pickle"
    assert store.load(info.uri).tolist() == array.tolist()


def ordinary_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31, 45, 27],
            "score": [0.5, np.nan, 0.75],
            "city": ["Oslo", "Lima", None],
            "joined": pd.to_datetime(["2024-01-02", "2024-03-04", "2024-05-06"], utc=True),
            "plan": pd.Categorical(["free", "pro", "free"]),
            "visits": pd.array([3, None, 7], dtype="Int64"),
        },
        index=pd.Index([101, 102, 103], name="customer_id"),
    )


def test_dataframe_is_stored_as_parquet(store: ArtifactStore) -> None:
    frame = ordinary_frame()
    info = store.save(frame, store.uri("customers"))
    assert info.materializer == "pandas" and info.uri.endswith("customers.parquet")
    assert pd.read_parquet(io.BytesIO(store.read_bytes(info.uri))).equals(
        frame
    )  # other tools read it as a table
    loaded = store.load(info.uri)
    assert type(loaded) is pd.DataFrame and loaded.equals(frame)
    assert loaded.index.equals(frame.index) and loaded.index.name == "customer_id"
    assert loaded.dtypes.to_dict() == frame.dtypes.to_dict()


@pytest.mark.parametrize("name", ["score", None])
def test_series_comes_back_a_series(store: ArtifactStore, name: str | None) -> None:
    series = pd.Series([0.1, 0.2, 0.3], name=name, index=pd.Index(["a", "b", "c"], name="key"))
    info = store.save(series, store.uri("scores"))
    assert info.materializer == "pandas"
    loaded = store.load(info.uri)
    assert type(loaded) is pd.Series and loaded.equals(series)
    assert loaded.name == name and loaded.index.equals(series.index)
    assert loaded.index.name == "key" and loaded.dtype == series.dtype


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({0: [1, 2], 1: [3.0, 4.0]}),
        pd.DataFrame({"mixed": pd.Series([1, "two"], dtype=object)}),
        pd.DataFrame({"lists": pd.Series([[1, 2], [3]], dtype=object)}),
    ],
    ids=["int-column-names", "mixed-object-column", "list-column"],
)
def test_frames_parquet_would_change_are_pickled(store: ArtifactStore, frame: pd.DataFrame) -> None:
    info = store.save(frame, store.uri("odd"))
    assert info.materializer == "pickle"
    loaded = store.load(info.uri)
    assert loaded.equals(frame) and list(loaded.columns) == list(frame.columns)
    assert stored_files(store) == ["odd.pkl"]  # no half-written .parquet left


def test_object_column_of_strings_keeps_its_dtype(store: ArtifactStore) -> None:
    frame = pd.DataFrame({"word": pd.Series(["alpha", "beta", None], dtype=object)})
    loaded = store.load(store.save(frame, store.uri("words")).uri)
    assert loaded.equals(frame) and loaded["word"].dtype == object


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        (1, "two", 3.0),
        bytearray(b"mutable"),
        {1: "one", 2: "two"},
        Colour.RED,
        np.float64(1.5),
        {"when": (2024, 1)},
        {1, 2, 3},
    ],
    ids=["tuple", "bytearray", "int-keys", "int-enum", "numpy-scalar", "nested-tuple", "set"],
)
def test_values_json_would_change_are_pickled(store: ArtifactStore, value: object) -> None:
    info = store.save(value, store.uri("value"))
    assert info.materializer == "pickle" and info.uri.endswith("value.pkl")
    loaded = store.load(info.uri)
    assert loaded == value and type(loaded) is type(value)


def test_deep_or_self_containing_lists_are_pickled(store: ArtifactStore) -> None:
    deep: list[object] = []
    for _ in range(500):
        deep = [deep]
    looped: list[object] = [1]
    looped.append(looped)
    assert materializer_for(deep).name == "pickle"
    assert materializer_for(looped).name == "pickle"
    loaded = store.load(store.save(looped, store.uri("looped")).uri)
    assert loaded[0] == 1 and loaded[1] is loaded


NOTEBOOK_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from stackmagic.stores.artifacts import ArtifactStore

    def double(x):
        return 2 * x

    class Counter:
        def __init__(self, start):
            self.count = start

        def bump(self):
            self.count += 1
            return self.count

    store = ArtifactStore.from_description(json.loads(sys.argv[1]))  # secrets: from the environment
    outputs = {"double": double, "triple": lambda x: 3 * x, "Counter": Counter,
               "counter": Counter(41)}
    for name, value in outputs.items():
        info = store.save(value, store.uri(name))
        print(info.materializer, info.uri)
    """
)


def test_functions_and_classes_from_main_survive(tmp_path: Path, store: ArtifactStore) -> None:
    """Saved in one process's ``__main__`` (as in a notebook), loaded where never defined."""
    saved = subprocess.run(
        [sys.executable, "-c", NOTEBOOK_SCRIPT, json.dumps(store.describe())],
        cwd=tmp_path,
        env={**os.environ, **store.secret_environment()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert saved.returncode == 0, saved.stderr
    assert {line.split()[0] for line in saved.stdout.splitlines()} == {"pickle"}
    assert store.load(store.uri("double.pkl"))(21) == 42
    assert store.load(store.uri("triple.pkl"))(5) == 15
    assert store.load(store.uri("Counter.pkl"))(0).bump() == 1
    assert store.load(store.uri("counter.pkl")).bump() == 42


# --- hashes, sizes, atomic writes ---------------------------------------------------------------


def test_large_array_hash_and_size_match_the_stored_file(store: ArtifactStore) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=40 * MiB, dtype=np.uint8)
    info = store.save(array, store.uri("big"))
    stored = store.read_bytes(info.uri)
    assert info.size == len(stored) > 40 * MiB
    assert info.content_hash == blake3(stored).hexdigest()
    assert np.array_equal(store.load(info.uri), array)


@pytest.mark.parametrize(
    "make",
    [lambda: {"a": [1, 2], "b": "c"}, lambda: np.arange(1000.0), ordinary_frame],
    ids=["json", "numpy", "pandas"],
)
def test_equal_values_get_equal_hashes(store: ArtifactStore, make: Callable[[], object]) -> None:
    first = store.save(make(), store.uri("run1", "out"))
    second = store.save(make(), store.uri("run2", "out"))
    assert first.content_hash == second.content_hash and first.uri != second.uri
    assert store.save("something else", store.uri("run3", "out")).content_hash != first.content_hash


def test_info_round_trips_through_json(store: ArtifactStore) -> None:
    info = store.save([1, 2, 3], store.uri("numbers"))
    assert ArtifactInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
    assert info.type_name == "builtins.list"


@pytest.mark.parametrize(
    "value",
    # 60 MiB: past every filesystem's first upload part, so an upload is under way when it fails
    [threading.Lock(), [b"x" * (2 * MiB), threading.Lock()], [b"x" * (60 * MiB), threading.Lock()]],
    ids=["lock", "lock-after-2MiB", "lock-after-60MiB"],
)
def test_failed_save_leaves_nothing_behind(store: ArtifactStore, value: object) -> None:
    location = store.uri("pipe", "run1", "train", "model")
    with pytest.raises(StackmagicError) as error:
        store.save(value, location)
    message = one_line_error(error)
    assert location in message and "_thread.lock" in message and "pickle" in message
    assert stored_files(store) == []


def test_reader_sees_nothing_or_the_whole_artifact(store: ArtifactStore) -> None:
    value = [bytes([n % 256]) * (100 * 1024) for n in range(400)]  # ~40 MB, written piece by piece
    location = store.uri("pipe", "run1", "train", "chunks")
    final = store.uri("pipe", "run1", "train", "chunks.pkl")
    saved: list[ArtifactInfo] = []
    saver = threading.Thread(target=lambda: saved.append(store.save(value, location)))
    sizes_seen: set[int] = set()
    polls = 0
    saver.start()
    while saver.is_alive():
        polls += 1
        if store.exists(final):
            sizes_seen.add(len(store.read_bytes(final)))
    saver.join()
    assert saved and polls > 0
    assert sizes_seen <= {saved[0].size}
    assert stored_files(store) == ["pipe/run1/train/chunks.pkl"]


def test_bytes_and_files_are_copied_in_and_out(store: ArtifactStore, tmp_path: Path) -> None:
    store.put_bytes(b"log line\n", store.uri("pipe", "run1", "log.txt"))
    assert store.read_bytes(store.uri("pipe", "run1", "log.txt")) == b"log line\n"
    source = tmp_path / "bundle.zip"
    source.write_bytes(b"PK" + bytes(3 * MiB))
    store.put_file(source, store.uri("bundles", "abc.zip"))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    store.get_file(store.uri("bundles", "abc.zip"), downloads / "copy.zip")
    assert (downloads / "copy.zip").read_bytes() == source.read_bytes()
    assert files_under(downloads) == ["copy.zip"]
    assert stored_files(store) == ["bundles/abc.zip", "pipe/run1/log.txt"]


# --- errors a user acts on ----------------------------------------------------------------------


def test_unknown_extension_is_one_clear_line(store: ArtifactStore) -> None:
    uri = store.uri("pipe", "data.weird")
    store.put_bytes(b"?", uri)
    with pytest.raises(StackmagicError) as error:
        store.load(uri)
    message = one_line_error(error)
    assert uri in message and ".weird" in message and "install" in message
    with pytest.raises(StackmagicError) as error:
        materializer_by_extension("weird")
    assert "known: bin, json, npy, parquet, pkl" in one_line_error(error)


def test_missing_artifact_is_one_clear_line(store: ArtifactStore, tmp_path: Path) -> None:
    uri = store.uri("pipe", "run1", "train", "model.pkl")
    for attempt in (store.load, store.read_bytes, lambda u: store.get_file(u, tmp_path / "m")):
        with pytest.raises(StackmagicError) as error:
            attempt(uri)
        message = one_line_error(error)
        assert message.startswith(f"no artifact at {uri};") and "run the step again" in message
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("part", ["", ".", "..", "a/b"])
def test_uri_parts_must_be_plain_names(store: ArtifactStore, part: str) -> None:
    with pytest.raises(ValueError, match="not a plain file or folder name"):
        store.uri("pipe", part)


def test_uris_outside_the_store_are_refused(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not in the artifact store"):
        store.save(1, str(tmp_path / "elsewhere" / "x"))


@pytest.mark.parametrize(
    "climb", ["../outside.json", "pipe/../../outside.json", "pipe/./x.json", "pipe/x\0.json"]
)
def test_uris_that_climb_out_of_the_store_are_refused_before_any_access(
    store: ArtifactStore, climb: str
) -> None:
    outside = store.uri("pipe", "outside.json")
    store.put_bytes(b'{"secret": "CANARY"}', outside)  # what a climb from the root could reach
    uri = f"{store.uri('pipe')}/{climb}"
    for access in (
        store.read_bytes,
        store.load,
        store.exists,
        lambda u: store.put_bytes(b"x", u),
        lambda u: store.save(1, u),
        lambda u: store.get_file(u, "/dev/null"),
    ):
        with pytest.raises(StackmagicError, match="is not in the artifact store") as refused:
            access(uri)
        assert "\n" not in str(refused.value)


# --- URLs, descriptions, secrets ----------------------------------------------------------------


def test_memory_url_picks_fsspec_memory_filesystem(memory_store: ArtifactStore) -> None:
    frame = ordinary_frame()
    info = memory_store.save(frame, memory_store.uri("pipe", "run1", "prep", "customers"))
    assert info.uri == "memory://team-bucket/pipelines/pipe/run1/prep/customers.parquet"
    assert MemoryFileSystem().cat_file("/team-bucket/pipelines/pipe/run1/prep/customers.parquet")
    assert memory_store.load(info.uri).equals(frame)
    again = memory_store.save(frame.head(1), memory_store.uri("pipe", "run1", "prep", "customers"))
    assert memory_store.load(again.uri).equals(frame.head(1))  # a new save replaces the old one
    assert sorted(MemoryFileSystem.store) == [
        "/team-bucket/pipelines/pipe/run1/prep/customers.parquet"
    ]


def test_description_reopens_the_store_without_secrets(memory_store: ArtifactStore) -> None:
    secret = "CANARY-s3cr3t-t0ken"
    store = ArtifactStore(
        "memory://team-bucket/pipelines/",
        {"skip_instance_cache": True},
        secret_options={"token": secret},
    )
    assert store.root == "memory://team-bucket/pipelines"
    info = store.save({"accuracy": 0.93}, store.uri("pipe", "run1", "eval", "metrics"))
    description = store.describe()
    assert description == {
        "root": "memory://team-bucket/pipelines",
        "storage_options": {"skip_instance_cache": True},
    }
    assert secret not in json.dumps(description) and secret not in repr(store)
    reopened = ArtifactStore.from_description(
        json.loads(json.dumps(description)), secret_options={"token": secret}
    )
    assert reopened.load(info.uri) == {"accuracy": 0.93}


def test_local_root_is_absolute_so_another_folder_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = ArtifactStore("artifacts/")
    assert store.root == str(tmp_path / "artifacts")
    info = store.save([1, 2], store.uri("numbers"))
    assert info.uri == str(tmp_path / "artifacts" / "numbers.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert ArtifactStore.from_description(store.describe()).load(info.uri) == [1, 2]
    assert ArtifactStore(f"file://{tmp_path}/artifacts").load(info.uri) == [1, 2]


# --- third-party materializers ------------------------------------------------------------------


PLUGIN = textwrap.dedent(
    '''
    from fractions import Fraction

    from stackmagic.stores.materializers import Materializer

    class FractionMaterializer(Materializer):
        """Fractions as "numerator/denominator" text."""

        name = "fraction"
        extension = "frac"

        def handles(self, value):
            return type(value) is Fraction

        def write(self, value, stream):
            stream.write(f"{value.numerator}/{value.denominator}".encode())

        def read(self, stream):
            return Fraction(stream.read().decode())
    '''
)


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installed package declaring one good, one broken and one wrong materializer."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "fraction_materializer.py").write_text(PLUGIN)
    info = site / "fraction_materializer-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fraction-materializer\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[stackmagic.materializers]\n"
        "fraction = fraction_materializer:FractionMaterializer\n"
        "broken = no_such_module:Materializer\n"
        "wrong = fractions:Fraction\n"
    )
    monkeypatch.syspath_prepend(str(site))
    _installed_materializers.cache_clear()
    yield
    _installed_materializers.cache_clear()
    sys.modules.pop("fraction_materializer", None)


@pytest.mark.usefixtures("plugin_site")
def test_installed_materializer_is_used_and_broken_ones_skipped(
    store: ArtifactStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="stackmagic"):
        info = store.save(Fraction(22, 7), store.uri("ratio"))
    assert info.materializer == "fraction" and store.read_bytes(info.uri) == b"22/7"
    assert store.load(info.uri) == Fraction(22, 7)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2
    assert "skipping materializer 'broken' from no_such_module:Materializer" in warnings[0]
    assert "skipping materializer 'wrong': fractions:Fraction is not a Materializer" in warnings[1]
    names = [materializer.name for materializer in all_materializers()]
    assert names == ["bytes", "json", "numpy", "pandas", "fraction", "pickle"]
    assert store.save({"ratio": "22/7"}, store.uri("params")).materializer == "json"


# --- import cost --------------------------------------------------------------------------------


def test_importing_the_stores_imports_no_heavy_library() -> None:
    heavy = ("numpy", "pandas", "pyarrow", "cloudpickle")
    code = (
        "import sys, stackmagic.stores.materializers, stackmagic.stores.artifacts\n"
        f"print(sorted(name for name in {heavy!r} if name in sys.modules))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"


KILLED_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from stackmagic.stores.artifacts import ArtifactStore

    class Stalls:
        def __reduce__(self):  # pickled after 60 MiB are written: the upload is under way
            print("writing", flush=True)
            time.sleep(600)

    store = ArtifactStore.from_description(json.loads(sys.argv[1]))
    store.save([b"x" * (60 << 20), Stalls()], store.uri("run1", "model"))
    """
)


def test_a_writer_killed_mid_write_leaves_no_artifact(store: ArtifactStore, tmp_path: Path) -> None:
    store.save("an older artifact", store.uri("run0", "model"))
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, json.dumps(store.describe())],
        cwd=tmp_path,
        env={**os.environ, **store.secret_environment()},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        writer.kill()
    assert not store.exists(store.uri("run1", "model.pkl"))
    with pytest.raises(StackmagicError, match="no artifact at"):
        store.load(store.uri("run1", "model.pkl"))
    # what is left, if anything, is a hidden temporary file: never under the artifact's name
    assert all(
        Path(uri).name.startswith(".model.pkl.tmp-") for uri in store.find(store.uri("run1"))
    )
    assert store.load(store.uri("run0", "model.json")) == "an older artifact"


def test_refused_credentials_and_a_missing_bucket_are_one_line(
    request: pytest.FixtureRequest,
) -> None:
    """Azurite checks the account key, as Azure does; every bucket store names a missing bucket."""
    server = request.getfixturevalue("azurite_server")
    wrong_key = server.connection_string.replace(server.account_key, "A" * 86 + "==")
    refused = ArtifactStore(
        request.getfixturevalue("bucket")("azure"), secret_options={"connection_string": wrong_key}
    )
    with pytest.raises(StackmagicError) as error:
        refused.save({"a": 1}, refused.uri("x"))
    message = one_line_error(error)
    assert message.startswith(f"the artifact store {refused.root} refused access (")
    assert "check its credentials" in message and "A" * 86 not in message
    missing = ArtifactStore(
        "az://no-such-container/store",
        secret_options={"connection_string": server.connection_string},
    )
    with pytest.raises(StackmagicError) as error:
        missing.save({"a": 1}, missing.uri("x"))
    assert one_line_error(error).startswith(
        "the bucket of the artifact store az://no-such-container/store does not exist; create it"
    )

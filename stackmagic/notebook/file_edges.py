"""Steps that hand files to each other: the edges no name shows.

``train`` pickles its model to ``model.pkl`` and ``report`` opens it: in the
notebook ``report`` runs later, so the file is there; in a pipeline nothing
ties the two, unless the code says so. A step *writes* a path it gives as
text to a call that writes files (``open(p, 'w')``, ``df.to_csv(p)``,
``plt.savefig(p)``, ``joblib.dump(m, p)``, ``os.makedirs(p)``,
``archive.extractall(p)``...); a later step that mentions the same path, or
a path inside a folder written (``data/part.txt`` after ``extractall('data')``),
runs after the last step before it that wrote it. A path may be a literal or
a name the setup or the parameters bind to one (``DATA = 'data/train.csv'``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping

from .analysis import python_source

#: Calls (functions or methods) whose text arguments are paths they write.
WRITING_CALLS = frozenset(
    {
        "to_csv",
        "to_parquet",
        "to_json",
        "to_pickle",
        "to_excel",
        "to_feather",
        "to_hdf",
        "to_html",
        "to_latex",
        "to_markdown",
        "to_stata",
        "to_xml",
        "to_netcdf",
        "savefig",
        "save",
        "save_model",
        "save_weights",
        "dump",
        "write_text",
        "write_bytes",
        "touch",
        "mkdir",
        "makedirs",
        "extractall",
        "extract",
        "unpack_archive",
        "make_archive",
        "urlretrieve",
        "copy",
        "copyfile",
        "copy2",
        "copytree",
        "move",
        "rename",
        "replace",
        "savez",
        "savez_compressed",
        "savetxt",
        "imwrite",
        "imsave",
        "write_image",
        "write_html",
        "to_file",
        "save_pretrained",
        "export",
    }
)
_WRITE_MODES = frozenset("wax+")
#: Calls whose first argument is a path they read, and calls that list folders.
READING_CALLS = frozenset(
    {
        "open",
        "read_csv",
        "read_parquet",
        "read_json",
        "read_excel",
        "read_table",
        "read_pickle",
        "read_feather",
        "read_hdf",
        "read_fwf",
        "read_orc",
        "read_stata",
        "read_sas",
        "read_xml",
        "loadtxt",
        "genfromtxt",
        "imread",
        "read_text",
        "read_bytes",
        "open_dataset",
        "ZipFile",
    }
)
LISTING_CALLS = frozenset({"glob", "iglob", "rglob", "listdir", "scandir", "walk", "iterdir"})


def constants(sources: Iterable[str]) -> dict[str, str]:
    """Names bound once, at the top level, to a text literal: ``DATA = 'data/train.csv'``."""
    found: dict[str, str] = {}
    for source in sources:
        for node in _tree(source).body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                found[node.targets[0].id] = _normal(node.value.value)
    return found


def written_paths(source: str, known: Mapping[str, str]) -> set[str]:
    """The paths ``source`` writes, as far as its text tells."""
    written: set[str] = set()
    for node in ast.walk(_tree(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _called(node)
        arguments = [*node.args, *(k.value for k in node.keywords)]
        if name == "open" and _opens_for_writing(node):
            written |= _texts(arguments[:1], known)
        elif name in WRITING_CALLS:
            written |= _texts(arguments, known)
            receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
            if isinstance(receiver, ast.Call):  # Path('out.txt').write_text(...)
                written |= _texts(receiver.args, known)
    return {path for path in written if path}


def mentioned_paths(source: str, known: Mapping[str, str]) -> set[str]:
    """Every text ``source`` holds, literally or through a known name: candidate paths it reads."""
    tree = _tree(source)
    texts = {
        _normal(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    texts |= {known[n.id] for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in known}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node) in LISTING_CALLS:
            texts |= _listed_folders(node, known)
    return {text for text in texts if text}


def reads_unnamed_files(source: str, known: Mapping[str, str]) -> bool:
    """Whether ``source`` reads files it does not name: a path built at run time, the folder
    the notebook is in listed (``glob('*.csv')``); ``glob('data/*.csv')`` names ``data``."""
    for node in ast.walk(_tree(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _called(node)
        if name in LISTING_CALLS and not _listed_folders(node, known):
            return True
        if (
            name in READING_CALLS
            and name != "open"
            or (name == "open" and not _opens_for_writing(node))
        ):
            given = node.args[:1] or [k.value for k in node.keywords if k.arg in _PATH_KEYWORDS]
            if given and not _texts(given, known):
                return True
    return False


def _called(call: ast.Call) -> str | None:
    function = call.func
    return (
        function.attr
        if isinstance(function, ast.Attribute)
        else (function.id if isinstance(function, ast.Name) else None)
    )


def _listed_folders(call: ast.Call, known: Mapping[str, str]) -> set[str]:
    """The folders a listing call names: its pattern or folder up to the first wildcard."""
    receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
    given = _texts(call.args[:1], known)
    if isinstance(receiver, ast.Call) and (base := _texts(receiver.args[:1], known)):
        given = {f"{folder}/{pattern}" for folder in base for pattern in (given or {""})}
    folders = set()
    for text in given:
        fixed = text.split("*")[0].split("?")[0].split("[")[0]
        folder = fixed if fixed == text else fixed.rpartition("/")[0]
        if folder:
            folders.add(folder.rstrip("/"))
    return folders


_PATH_KEYWORDS = frozenset({"file", "path", "filepath_or_buffer", "path_or_buf", "io", "fname"})


def same_file(mentioned: str, written: str) -> bool:
    """Whether a mention names what was written: the path, something inside it, or its folder."""
    return (
        mentioned == written
        or mentioned.startswith(written + "/")
        or written.startswith(mentioned + "/")
    )


def _opens_for_writing(call: ast.Call) -> bool:
    modes = [*call.args[1:2], *(k.value for k in call.keywords if k.arg == "mode")]
    return any(
        isinstance(m, ast.Constant) and isinstance(m.value, str) and _WRITE_MODES & set(m.value)
        for m in modes
    )


def _texts(nodes: Iterable[ast.expr], known: Mapping[str, str]) -> set[str]:
    found = set()
    for node in nodes:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(_normal(node.value))
        elif isinstance(node, ast.Name) and node.id in known:
            found.add(known[node.id])
    return found


def _normal(text: str) -> str:
    """``./data/`` and ``data`` are one path; text that cannot be a relative path is none."""
    if "\n" in text or "://" in text or len(text) > 300:
        return ""
    text = text.strip()
    while text.startswith("./"):
        text = text[2:]
    return text.rstrip("/")


def _tree(source: str) -> ast.Module:
    try:
        return ast.parse(python_source(source))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])

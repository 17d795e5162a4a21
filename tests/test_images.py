"""``stackmagic image dockerfile``: a step image with what the notebook imports, pinned from here."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from notebooks import write_notebook


def test_the_dockerfile_pins_the_notebooks_imports_and_the_stores_extras(
    cli, project: Path
) -> None:
    (project / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    notebook = write_notebook(
        project / "train.ipynb",
        "import json\nimport numpy as np\nfrom helpers import double\n%matplotlib inline",
        "%%step load\nimport pandas as pd\nframe = pd.DataFrame({'x': np.arange(3)})",
        "%%step fit\nfrom pyarrow import parquet\nimport surely_not_installed_anywhere\nmodel = 1",
    )
    assert cli("init").code == 0
    assert cli("artifact-store", "register", "bucket", "--type=s3", "--path=s3://b/x").code == 0
    assert (
        cli(
            "metadata-store",
            "register",
            "db",
            "--type=mysql",
            "--host=db.example",
            "--username=u",
            "--database=d",
        ).code
        == 0
    )
    assert cli("stack", "register", "team", "-m", "db", "-a", "bucket", "-o", "default").code == 0
    assert cli("stack", "set", "team").code == 0

    result = cli("image", "dockerfile", str(notebook))
    assert result.code == 0, result.err
    text = (project / "Dockerfile").read_text()
    versions = {name: importlib.metadata.version(name) for name in ("numpy", "pandas", "pyarrow")}
    for name, version in versions.items():
        assert f"    {name}=={version}" in text
    assert '"stackmagic[mysql,s3]==' in text, "stackmagic with its stores' extras"
    assert "helpers" not in text.split("FROM")[1], "the notebook's own module travels in the bundle"
    assert (
        "json==" not in text
        and "not installed where this was written, so not included: surely_not_installed_anywhere"
        in text
    )
    assert text.splitlines()[4].startswith("FROM python:3.")

    again = cli("image", "dockerfile", str(notebook))
    assert again.code == 2 and "exists; give another -o PATH, or --force" in again.err
    printed = cli("image", "dockerfile", str(notebook), "-o", "-", "--base", "python:3.11")
    assert printed.code == 0 and "FROM python:3.11\n" in printed.out

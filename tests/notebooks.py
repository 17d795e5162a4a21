"""Writing small real notebooks for tests."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def write_notebook(path: Path, *cells: str, parameters: str | None = None) -> Path:
    """Code cells in order; a markdown cell is written as '# md: text'; parameters go first."""
    notebook_cells = []
    if parameters is not None:
        notebook_cells.append(new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    for source in cells:
        if source.startswith("# md: "):
            notebook_cells.append(new_markdown_cell(source[len("# md: ") :]))
        else:
            notebook_cells.append(new_code_cell(source))
    nbformat.write(new_notebook(cells=notebook_cells), path)
    return path

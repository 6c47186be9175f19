"""examples/notebook.ipynb, executed in a real IPython kernel (nbclient + ipykernel).

The notebook's own assertions check the behaviour it shows; this test runs it
top to bottom, then runs the server and client cells again, as someone
re-running cells after ``server.shutdown()`` would (and the client cells once
more, dropping an open connection), and checks that nothing
was written to stderr (no warning, no traceback) and that a bare connection
shows a useful repr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"

#: Seconds for one cell; the slowest one closes a connection and a server.
CELL_TIMEOUT = 60


def outputs(cell: Any, kind: str) -> list[Any]:
    return [output for output in cell.get("outputs", []) if output.output_type == kind]


@pytest.mark.timeout(180)
def test_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits it: an unclosed socket would show up on stderr.
    monkeypatch.setenv("PYTHONWARNINGS", "always::ResourceWarning")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    code = [
        (index, cell)
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
    ]
    rerun = [
        (index, cell)
        for index, cell in code
        if {"server", "client", "stop"} & set(cell.metadata.get("tags", []))
    ]
    assert rerun, "the notebook lost its tags"
    with client.setup_kernel():
        for index, cell in code:
            client.execute_cell(cell, index)
        # Re-running the server cell after server.shutdown() reuses the port;
        # re-running the client cells replaces an open connection.
        client_cells = [(i, c) for i, c in rerun if "client" in c.metadata.tags]
        for index, cell in [*rerun[:-1], *client_cells, rerun[-1]]:
            client.execute_cell(cell, index)

    for index, cell in code:
        assert not outputs(cell, "error"), (index, cell.outputs)
        streams = outputs(cell, "stream")
        assert not [s for s in streams if s.name == "stderr"], (index, streams)

    client_cell = client_cells[0][1]
    (result,) = outputs(client_cell, "execute_result")
    text = result.data["text/plain"]
    assert text.startswith("<ClientConnection OPEN local=('127.0.0.1', "), text
    assert "remote=('127.0.0.1', " in text

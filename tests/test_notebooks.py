"""Every notebook in notebooks/ runs top to bottom without error (nbclient, quick settings).

The kernel starts in the repository root, so it imports this checkout's mmjax; the notebooks
read MMJAX_NOTEBOOK_QUICK (a few training steps on a 64-scene dataset) and write their runs and
data under the test's temporary directory. Marked slow: one to three minutes per notebook.
"""

import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_there_are_notebooks_and_they_are_saved_without_outputs():
    import nbformat

    assert [os.path.basename(p)[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and not any(c.outputs or c.execution_count for c in code), path


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("MMJAX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MMJAX_NOTEBOOK_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MMJAX_DATA_DIR", str(tmp_path / "data"))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    )
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    printed = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert f"mmjax from {os.path.join(ROOT, 'mmjax')}" in printed

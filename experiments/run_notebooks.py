r"""Re-executes the notebooks and saves them with their outputs, figures included.

  python -m experiments.run_notebooks [--notebooks=02_attention_maps,...] [--runs=runs/notebooks]

Each notebook of notebooks/ runs top to bottom in a fresh kernel started in the repository
root, in full (not MMJAX_NOTEBOOK_QUICK), training its runs anew in `--runs` (which must not
exist yet: the outputs come from fresh runs, and no earlier run is ever deleted) with the
dataset in its usual place. A notebook is saved only when every cell ran. Its metadata records
the hash of its code (`mmjax.code_sha256`), which tests/test_notebooks.py checks, so a notebook
whose code changed after its outputs were made fails the fast tests until this command runs
again; execution timings are dropped, so a re-run changes only what its outputs change.
Needs the test extras (nbclient, nbformat, ipykernel).
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")


def code_sha256(nb) -> str:
    """The hash of a notebook's code cells, in order (what its outputs were made from)."""
    code = "\n\0".join(c.source for c in nb.cells if c.cell_type == "code")
    return hashlib.sha256(code.encode()).hexdigest()


def execute(path: str, runs: str, timeout: int):
    """Runs the notebook at `path` in a kernel started in the repository root; returns it."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    os.environ["MMJAX_NOTEBOOK_RUNS"] = runs
    os.environ.pop("MMJAX_NOTEBOOK_QUICK", None)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": ROOT}}
    )
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps: noise in every diff
    nb.metadata["mmjax"] = {"code_sha256": code_sha256(nb)}
    return nb


def main(argv) -> None:
    """Runs the chosen notebooks one after the other and saves each that ran."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    import nbformat

    paths = sorted(glob.glob(os.path.join(NOTEBOOKS, "*.ipynb")))
    if FLAGS.notebooks:
        names = {os.path.basename(p)[: -len(".ipynb")]: p for p in paths}
        unknown = sorted(set(FLAGS.notebooks) - set(names))
        if unknown:
            raise app.UsageError(f"no notebooks {unknown}; there are {sorted(names)}")
        paths = [names[n] for n in FLAGS.notebooks]
    runs = os.path.relpath(os.path.abspath(FLAGS.runs), ROOT)
    if os.path.exists(os.path.join(ROOT, runs)):
        print(
            f"mmjax: {runs} exists; the notebooks' outputs come from fresh runs: delete it or "
            "pass --runs=<a new directory>",
            file=sys.stderr,
        )
        sys.exit(2)
    for path in paths:
        start = time.time()
        print(f"running {os.path.relpath(path, ROOT)} ...", flush=True)
        nb = execute(path, runs, FLAGS.timeout)
        nbformat.write(nb, path)
        size = os.path.getsize(path) / 1024
        print(f"  saved with its outputs ({size:.0f} KiB) in {time.time() - start:.0f} s")


def define_flags() -> None:
    """The command's flags, defined only when it runs (tests import `code_sha256` alone)."""
    flags.DEFINE_list("notebooks", [], "Names of notebooks to run (default: all), no .ipynb.")
    flags.DEFINE_string("runs", "runs/notebooks", "Directory for the notebooks' runs (a new one).")
    flags.DEFINE_integer("timeout", 3600, "Seconds a cell may take.")


if __name__ == "__main__":
    define_flags()
    app.run(main)

"""The notebooks: saved with the outputs of their current code, naming only config keys and
mmjax names that exist, and (slow) running top to bottom.

The fast tests read the notebooks: every code cell was executed, in order, with no error; the
outputs hold figures and stay small; the code hash that `python -m experiments.run_notebooks`
recorded matches the code (a notebook edited after its outputs were made fails here); every
config file, config argument and config key a notebook sets, or names in its text as
`config.x.y`, exists; every `from mmjax... import name` resolves. The slow test runs
each notebook with nbclient on quick settings (MMJAX_NOTEBOOK_QUICK: a few training steps on a
64-scene dataset) in the test's temporary directory: one to three minutes per notebook.
"""

import ast
import glob
import importlib
import os
import re

import pytest

from experiments.run_notebooks import code_sha256
from mmjax.config_loader import load_config
from mmjax.config_utils import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
CONFIG_FILES = {
    os.path.basename(p): os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    + glob.glob(os.path.join(ROOT, "mmjax", "projects", "*", "configs", "*.py"))
}
OVERRIDE = re.compile(r"^(?:--config\.)?([a-z_]\w*(?:\.\w+)+)=")
ARGUMENTS = re.compile(r"^\w+=[^,=]*(?:,\w+=[^,=]*)*$")
NAMED_KEY = re.compile(r"^config\.([a-z_]\w*(?:\.[a-z_]\w*)*)$")
MAX_KIB = 1024


def _read(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def _strings(code: str) -> list[str]:
    """Every string literal of `code`; an f-string's placeholders become '{}'."""
    tree, found, inside = ast.parse(code), [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            found.append(
                "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            )
            inside |= {id(n) for n in ast.walk(node) if isinstance(n, ast.Constant)}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in inside
        ):
            found.append(node.value)
    return found


def _settings(nb):
    """(config files, config arguments, config keys set, config keys named in the text)."""
    strings = [s for c in nb.cells if c.cell_type == "code" for s in _strings(c.source)]
    files = {
        CONFIG_FILES[m] for s in strings for m in re.findall(r"(\w+\.py)", s) if m in CONFIG_FILES
    }
    arguments, keys = set(), set()
    for s in strings:
        parts = s.split(".py:", 1)
        if len(parts) == 2 or ARGUMENTS.match(s):
            items = parts[-1].split(",")
            arguments |= {i.split("=")[0] for i in items if "=" in i and not i.startswith("{")}
        if match := OVERRIDE.match(s):
            keys.add(match.group(1))
    spans = [
        m for c in nb.cells if c.cell_type == "markdown" for m in re.findall(r"`([^`]+)`", c.source)
    ]
    named = {match.group(1) for s in spans if (match := NAMED_KEY.match(s))}
    return files, arguments, keys, named


def _has(config, key: str) -> bool:
    node = config
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            return False
        node = node[part]
    return True


def _known_arguments(config_file: str) -> set[str]:
    try:
        load_config(f"{config_file}:no_such_argument=1", [])
    except ConfigError as error:
        return {a.strip() for a in str(error).split("known arguments:")[1].split(",")}
    raise AssertionError(f"{config_file} accepted an unknown argument")


def test_notebooks_are_saved_with_the_outputs_of_their_current_code():
    assert [os.path.basename(p)[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_"]
    for path in NOTEBOOKS:
        name = os.path.basename(path)
        nb = _read(path)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), name
        outputs = [o for c in code for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} has no figure"
        assert nb.metadata.get("mmjax", {}).get("code_sha256") == code_sha256(nb), (
            f"{name}'s code changed after its outputs were made: "
            "run python -m experiments.run_notebooks"
        )
        assert os.path.getsize(path) < MAX_KIB * 1024, f"{name} is over {MAX_KIB} KiB"


def test_every_config_key_and_argument_a_notebook_names_exists():
    for path in NOTEBOOKS:
        name = os.path.basename(path)
        files, arguments, keys, named = _settings(_read(path))
        assert files, f"{name} names no config file"
        configs = [load_config(f, []) for f in sorted(files)]
        known = set().union(*(_known_arguments(f) for f in files))
        assert arguments <= known, f"{name}: unknown config arguments {arguments - known}"
        for key in sorted(keys):
            assert any(_has(c, key) for c in configs), f"{name} sets config key {key!r}"
        for key in sorted(named):
            assert any(_has(c, key) for c in configs), f"{name}'s text names config.{key}"


def test_every_mmjax_name_a_notebook_imports_exists():
    for path in NOTEBOOKS:
        for cell in _read(path).cells:
            if cell.cell_type != "code":
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.ImportFrom) and node.module.startswith("mmjax"):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name) or importlib.util.find_spec(
                            f"{node.module}.{alias.name}"
                        ), f"{os.path.basename(path)}: {node.module}.{alias.name}"


def test_the_key_check_finds_a_key_that_does_not_exist():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            'load_config(f"configs/vqa_transformer.py:size=tiny,steps={S}", '
            '["model.depth=2", "model.stem_tokens=25"])'
        ),
        nbformat.v4.new_markdown_cell("`config.model.patch_size`, `config.model.grid`; `model.x`"),
    ]
    files, arguments, keys, named = _settings(nb)
    assert files == {"configs/vqa_transformer.py"} and arguments == {"size", "steps"}
    assert keys == {"model.depth", "model.stem_tokens"}
    assert named == {"model.patch_size", "model.grid"}  # `model.x` is a variable, not config
    config = load_config("configs/vqa_transformer.py", [])
    assert _has(config, "model.depth") and not _has(config, "model.stem_tokens")
    assert _has(config, "model.patch_size") and not _has(config, "model.grid")


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
    # The kernel starts in the repository root: this checkout's mmjax, by its relative path.
    assert "mmjax from mmjax\n" in printed

"""Nothing in a workdir is unpickled or run as code: pickles and Python files planted in a
trained run's workdir are never opened, and a pickle in place of a file mmjax reads (config,
tokenizer, answers, checkpoint metadata, the data iterator state) is refused, not loaded.

A planted pickle, if unpickled, would create a marker directory; an audit hook also records
every unpickling of a class or function (`pickle.find_class`, which any pickle that runs code
needs), every process started, and every file opened under the workdir.
"""

import os
import pickle
import shutil
import sys

import jax
import numpy as np
import pytest
from reliability_runs import STEPS, assert_bitwise_equal, reference_run, run, state_leaves

from mmjax.predict import InputError
from mmjax.predict.run import load_run
from mmjax.train.checkpoints import Checkpointer, CheckpointError, restore_params
from mmjax.workdir import ANSWERS_FILE, CONFIG, Workdir, WorkdirError

_RUNS_CODE = ("pickle.find_class", "os.system", "os.exec", "os.posix_spawn", "subprocess.Popen")
_WATCH = {"root": None, "events": []}


def _watch(event, args):
    root = _WATCH["root"]
    if root is None:
        return
    if event in _RUNS_CODE:
        _WATCH["events"].append((event, args))
    elif event == "open" and isinstance(args[0], str) and args[0].startswith(root):
        _WATCH["events"].append((event, args[0]))


class _RunsOnUnpickling:
    """Unpickling this calls os.mkdir(marker)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory)


@pytest.fixture
def watched(reference, tmp_path):
    """(workdir, marker, payload): a copy of the reference workdir, watched while the test runs."""
    workdir = str(tmp_path / "run")
    shutil.copytree(reference[1], workdir)
    marker = str(tmp_path / "code_ran")
    if not _WATCH.get("hooked"):
        sys.addaudithook(_watch)  # audit hooks cannot be removed: this one is gated by root
        _WATCH["hooked"] = True
    _WATCH["root"], _WATCH["events"] = workdir, []
    yield workdir, marker, _RunsOnUnpickling(marker)
    _WATCH["root"] = None
    assert not os.path.exists(marker), "code in a workdir file ran"
    assert [e for e in _WATCH["events"] if e[0] != "open"] == []


def _plant(path, content: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    return path


def test_pickles_and_python_files_planted_in_a_workdir_are_never_opened(reference, watched):
    workdir, marker, payload = watched
    code = f"import os\nos.mkdir({marker!r})\n".encode()
    planted = [
        _plant(f"{workdir}/state.pkl", pickle.dumps(payload)),
        _plant(f"{workdir}/checkpoints/{STEPS}/state/params.pkl", pickle.dumps(payload)),
        _plant(f"{workdir}/checkpoints/{STEPS}/data/process_0-of-1.pickle", pickle.dumps(payload)),
        _plant(f"{workdir}/sitecustomize.py", code),
        _plant(f"{workdir}/mmjax_plugin.py", code),
        _plant(f"{workdir}/__init__.py", code),
    ]
    np.save(f"{workdir}/eval/objects.npy", np.array([payload], dtype=object), allow_pickle=True)
    planted.append(f"{workdir}/eval/objects.npy")
    _WATCH["events"].clear()  # from here on, what loading opens

    loaded = load_run(workdir)  # what mmjax.predict reads: config, vocabularies, parameters
    params = jax.tree_util.tree_flatten_with_path({"params": loaded.params})[0]
    _, final = reference[2]
    for path, leaf in params:
        assert np.array_equal(np.asarray(leaf), final[jax.tree_util.keystr(path)])
    Workdir(workdir).check_resumable(loaded.config)  # what mmjax.main reads before training
    assert_bitwise_equal(state_leaves(workdir), reference[2])  # and what it resumes from

    opened = {path for event, path in _WATCH["events"] if event == "open"}
    assert {f"{workdir}/{CONFIG}", f"{workdir}/{ANSWERS_FILE}"} <= opened  # the hook sees reads
    assert opened.isdisjoint(planted)


def test_a_pickle_in_place_of_a_file_mmjax_reads_is_refused(watched):
    workdir, _, payload = watched
    for name, protocol in (("config.json", 0), ("tokenizer.json", 5), ("answers.json", 2)):
        original = f"{workdir}/{name}"
        shutil.copy(original, f"{original}.orig")
        _plant(original, pickle.dumps(payload, protocol=protocol))
        with pytest.raises(InputError, match=rf"{original} (holds a Python pickle|is not the)"):
            load_run(workdir)
        if name == CONFIG:
            with pytest.raises(WorkdirError, match=original):
                Workdir(workdir).check_resumable(None)
        os.replace(f"{original}.orig", original)

    # Each checkpoint with a pickle in place of a file orbax or the data iterator reads.
    checkpoints = f"{workdir}/checkpoints"
    steps = sorted(os.listdir(checkpoints))
    assert len(steps) == 3
    for step, name in zip(
        steps, ("state/_METADATA", "data/process_0-of-1.json", "state/manifest.ocdbt")
    ):
        _plant(f"{checkpoints}/{step}/{name}", pickle.dumps(payload))
    with pytest.raises(CheckpointError, match="could be read"):
        Checkpointer(checkpoints).restore_latest()
    assert sorted(os.listdir(checkpoints)) == steps  # nothing moved
    # The parameters alone: the newest checkpoint whose arrays' metadata is intact.
    step, _ = restore_params(checkpoints)
    assert step == int(steps[1])


def test_main_refuses_a_pickled_tokenizer_in_one_line(reference, watched):
    data_dir = reference[0]
    workdir, marker, payload = watched
    _plant(f"{workdir}/tokenizer.json", pickle.dumps(payload))
    _WATCH["root"] = None  # another process: whether code ran shows in the marker alone
    result = run(workdir, data_dir)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"mmjax: workdir error: {workdir}/tokenizer.json holds a Python pickle, which mmjax "
        "never loads (it could run code); replace it with the file the run wrote, or use a new "
        "--workdir"
    )

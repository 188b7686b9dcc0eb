"""Sweeps: trial generation and names, the runner (with a fake trial), results, Slurm, and one
real sweep of the tiny VQA config."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mmjax import sweeps
from mmjax.config_utils import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # experiments/ is not installed; run from the repository root

from experiments import sweep  # noqa: E402

# A stand-in for `python -m mmjax.main`: takes the same flags, sleeps, handles SIGTERM like
# main (exits 0), fails with main's one-line error when --config.fail=True, and writes
# metrics.jsonl (eval record between two train records) with validation/accuracy = 100 * lr
# and a test/accuracy that ranks the trials the other way round (the default --metric is
# validation/accuracy, so a ranking by test/accuracy would show).
FAKE_TRIAL = r"""
import json, os, signal, sys, time
flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
workdir = flags["workdir"]
os.makedirs(workdir, exist_ok=True)
with open(os.path.join(workdir, "runs.txt"), "a") as f:
    f.write("run\n")
attempt = len(open(os.path.join(workdir, "runs.txt")).readlines())
events = os.path.join(os.path.dirname(os.path.abspath(workdir)), "events.txt")
def event(what):
    with open(events, "a") as f:
        devices = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        f.write(f"{what} {os.path.basename(workdir)} {time.time()} {devices}\n")
event("start")
stopped = []
signal.signal(signal.SIGTERM, lambda *a: stopped.append(1))
end = time.time() + (float(flags.get("config.sleep", "0.5")) if attempt == 1 else 0.1)
while time.time() < end and not stopped:
    time.sleep(0.02)
event("end")
if stopped:
    print("saved a checkpoint", flush=True)
    sys.exit(0)
if flags.get("config.fail") == "True":
    print("some traceback line", file=sys.stderr)
    print("mmjax: config error: fake failure", file=sys.stderr)
    sys.exit(2)
lr = float(flags["config.optim.lr"])
with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write(json.dumps({"step": 10, "train/loss": 1.0}) + "\n")
    eval_record = {"validation/accuracy": 100 * lr, "validation/loss": 1 - lr}
    eval_record.update({"test/accuracy": 1 - 100 * lr, "test/loss": lr})
    f.write(json.dumps({"step": 10, **eval_record}) + "\n")
    f.write(json.dumps({"step": 10, "train/loss": 0.5}) + "\n")
print(json.dumps({"status": "done"}))
"""

SWEEP_CONFIG = """
from mmjax import sweeps

def get_sweep(arg=None):
    if arg == "resume":
        return [{"optim.lr": 0.001}, {"optim.lr": 0.002, "sleep": 60.0}, {"optim.lr": 0.003}]
    return sweeps.chain(
        sweeps.product(**{"optim.lr": [0.001, 0.004, 0.002]}),
        [["optim.lr=0.003", "--config.fail=True"]],
    )
"""


@pytest.fixture
def fake(tmp_path):
    """(config path, --trial_command, workdir) for sweeps run by the fake trial."""
    (tmp_path / "fake_trial.py").write_text(FAKE_TRIAL)
    (tmp_path / "sweep_config.py").write_text(SWEEP_CONFIG)
    command = f"{sys.executable} {tmp_path / 'fake_trial.py'}"
    return str(tmp_path / "sweep_config.py"), command, str(tmp_path / "sweep")


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _events(workdir):
    with open(os.path.join(workdir, "events.txt")) as f:
        return [line.split() for line in f]


# ---------------------------------------------------------------------------------------------
# Trials and names.


def test_product_zip_and_chain_make_the_expected_trials():
    grid = sweeps.product(**{"optim.lr": [1e-3, 3e-4], "model.depth": [2, 3]}, total_steps=100)
    assert grid == [
        {"optim.lr": 1e-3, "model.depth": 2, "total_steps": 100},
        {"optim.lr": 1e-3, "model.depth": 3, "total_steps": 100},
        {"optim.lr": 3e-4, "model.depth": 2, "total_steps": 100},
        {"optim.lr": 3e-4, "model.depth": 3, "total_steps": 100},
    ]
    paired = sweeps.zip_(**{"optim.lr": [1e-3, 3e-4], "optim.warmup_steps": [10, 40]})
    assert paired == [
        {"optim.lr": 1e-3, "optim.warmup_steps": 10},
        {"optim.lr": 3e-4, "optim.warmup_steps": 40},
    ]
    nested = sweeps.product(paired, {"seed": [0, 1]})
    assert len(nested) == 4 and nested[1] == {**paired[0], "seed": 1}
    both = sweeps.chain(paired, [["model.depth=4"]]) + [{":size": "small"}]
    assert len(both) == 4 and both[2] == {"model.depth": "4"}
    # A tuple is one value (a config value), not an axis.
    assert sweeps.product(**{"model.conv_channels": [(8, 8), (16, 16)]})[1] == {
        "model.conv_channels": (16, 16)
    }
    with pytest.raises(ConfigError, match="one length"):
        sweeps.zip_(a=[1, 2], b=[1, 2, 3])
    with pytest.raises(ConfigError, match="set by two"):
        sweeps.product({"a": [1]}, a=[2])


def test_names_are_readable_unique_safe_and_stable():
    trials = sweeps.expand(sweeps.product(**{"optim.lr": [1e-3, 3e-4], "model.depth": [2, 3]}))
    assert [t.name for t in trials] == [
        "lr=0.001,depth=2",
        "lr=0.001,depth=3",
        "lr=0.0003,depth=2",
        "lr=0.0003,depth=3",
    ]
    # A trial's name depends on its own overrides only: extending the sweep renames nothing.
    more = sweeps.expand(sweeps.product(**{"optim.lr": [1e-2, 1e-3], "model.depth": [2]}))
    assert more[1].name == trials[0].name
    # Keys that would clash when shortened keep their path; unsafe characters become '_'.
    odd = sweeps.expand(
        [
            {"model.dropout_rate": 0.1, "data.dropout_rate": 0.2, "model.conv_channels": (8, 8)},
            {":size": "small", "model.name": "a b/c"},
            {},
        ]
    )
    assert [t.name for t in odd] == [
        "model.dropout_rate=0.1,data.dropout_rate=0.2,conv_channels=8_8",
        "size=small,name=a_b_c",
        "base",
    ]
    long = sweeps.expand([{"k": "x" * 300}, {"k": "x" * 301}])
    assert all(len(t.name) <= 120 for t in long) and long[0].name != long[1].name
    # Different values with the same safe text get a hash to tell them apart.
    clash = sweeps.expand([{"name": "a b"}, {"name": "a/b"}])
    assert clash[0].name != clash[1].name and clash[0].name.startswith("name=a_b~")
    with pytest.raises(ConfigError, match="twice"):
        sweeps.expand([{"seed": 1}, ["seed=1"]])
    with pytest.raises(ConfigError, match="no trials"):
        sweeps.expand([])


def test_trial_flags_and_config_arguments():
    (trial,) = sweeps.expand([{":size": "small", "optim.lr": 3e-4, "model.remat": True}])
    assert trial.main_args("configs/x.py:size=tiny,steps=5", ["data.data_dir=/d"]) == [
        "--config=configs/x.py:size=small,steps=5",
        "--config.data.data_dir=/d",
        "--config.optim.lr=0.0003",
        "--config.model.remat=True",
    ]
    assert sweeps.with_config_args("c.py", {"size": "tiny"}) == "c.py:size=tiny"
    assert sweeps.with_config_args("c.py:tiny", {"steps": "3"}) == "c.py:tiny,steps=3"


def test_the_vqa_config_defines_a_learning_rate_by_depth_sweep():
    path = os.path.join(ROOT, "configs", "vqa_transformer.py")
    trials = sweeps.load_sweep(path)
    assert len(trials) == 6 and trials[0].name == "lr=0.0003,depth=2"
    assert {t.describe() for t in trials} >= {"optim.lr=0.003 model.depth=3"}
    small = sweeps.load_sweep(f"{path}:size=tiny", "lr=1e-3,depth=1,seeds=0/1")
    assert [t.name for t in small] == ["lr=0.001,depth=1,seed=0", "lr=0.001,depth=1,seed=1"]
    with pytest.raises(ConfigError, match="unknown config argument 'lrr'"):
        sweeps.load_sweep(path, "lrr=1")


# ---------------------------------------------------------------------------------------------
# The command line and the runner, with the fake trial.


def test_final_metrics_are_the_last_eval_record_without_a_line_cut_short(tmp_path):
    assert sweep.final_metrics(str(tmp_path / "absent")) == {}
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write(json.dumps({"step": 5, "validation/accuracy": 0.5, "train/x": 1.0}) + "\n")
        f.write(json.dumps({"step": 10, "validation/accuracy": 0.7, "test/accuracy": 0.6}) + "\n")
        f.write(json.dumps({"step": 10, "train/loss": 0.5}) + "\n")
        f.write('{"step": 12, "validation/accuracy": 0.')  # cut short by a kill
    expected = {"step": 10, "validation/accuracy": 0.7, "test/accuracy": 0.6}
    assert sweep.final_metrics(str(tmp_path)) == expected
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write(json.dumps({"step": 1, "train/loss": 2.0}) + "\n")
    assert sweep.final_metrics(str(tmp_path)) == {}


def test_dry_run_prints_one_command_per_trial(fake):
    config, command, workdir = fake
    out = io.StringIO()
    argv = [f"--config={config}:size=tiny", f"--workdir={workdir}", "--dry_run"]
    assert sweep.main([*argv, "--config.total_steps=10"], out=out) == 0
    commands = [line for line in out.getvalue().splitlines() if not line.startswith("#")]
    assert len(commands) == 4
    assert commands[0] == (
        f"{sys.executable} -m mmjax.main --config={config}:size=tiny "
        f"--workdir={workdir}/lr=0.001 --config.total_steps=10 --config.optim.lr=0.001"
    )
    assert not os.path.exists(workdir)


def test_runner_runs_n_at_a_time_records_the_failure_and_ranks_the_results(fake):
    config, command, workdir = fake
    out = io.StringIO()
    code = sweep.main(
        [
            f"--config={config}",
            f"--workdir={workdir}",
            "--parallel=2",
            "--devices_per_trial=1",
            f"--trial_command={command}",
        ],
        out=out,
    )
    assert code == 1, out.getvalue()  # one trial failed; the others ran to the end
    events = _events(workdir)
    running, most = set(), 0
    for kind, name, _, devices in sorted(events, key=lambda e: float(e[2])):
        running = running | {(name, devices)} if kind == "start" else running - {(name, devices)}
        most = max(most, len(running))
        assert len({d for _, d in running}) == len(running)  # each its own GPU
    assert most == 2
    failed = sweep.read_status(os.path.join(workdir, "lr=0.003,fail=True"))
    assert failed["status"] == "failed" and failed["returncode"] == 2
    assert failed["error"] == "mmjax: config error: fake failure"
    log = open(os.path.join(workdir, "lr=0.003,fail=True", "log.txt")).read()
    assert "some traceback line" in log and "sweep attempt 1" in log

    rows = _read_csv(os.path.join(workdir, "results.csv"))
    assert [r["name"] for r in rows] == ["lr=0.004", "lr=0.002", "lr=0.001", "lr=0.003,fail=True"]
    assert [r["status"] for r in rows] == ["done"] * 3 + ["failed"]
    assert list(rows[0])[3] == "validation/accuracy"  # the default --metric's column
    assert float(rows[0]["validation/accuracy"]) == pytest.approx(0.4)
    assert float(rows[0]["test/accuracy"]) == pytest.approx(0.6)  # reported, not ranked by
    assert rows[0]["validation/loss"] and rows[0]["optim.lr"] == "0.004"
    assert rows[3]["exit_code"] == "2"
    assert rows[3]["error"] == "mmjax: config error: fake failure"
    table = open(os.path.join(workdir, "results.md")).read().splitlines()
    body = [line for line in table if line.startswith("| ") and "`" in line]
    assert body[0].startswith("| 1 | `lr=0.004` | done | 0.4 |")
    assert body[-1].startswith("| 4 | `lr=0.003,fail=True` | failed |")
    assert body[-1].endswith("mmjax: config error: fake failure |")
    with open(os.path.join(workdir, "results.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # Started again, the finished trials are skipped; the failed one is retried unless
    # --skip_failed.
    failed_runs = os.path.join(workdir, "lr=0.003,fail=True", "runs.txt")
    flags = [f"--config={config}", f"--workdir={workdir}", f"--trial_command={command}"]
    assert sweep.main([*flags, "--skip_failed"], out=out) == 1
    assert len(open(failed_runs).readlines()) == 1
    assert sweep.main(flags, out=out) == 1
    assert len(open(failed_runs).readlines()) == 2
    assert len(open(os.path.join(workdir, "lr=0.001", "runs.txt")).readlines()) == 1
    # --mode=min puts the lowest first; --report rewrites the results without running.
    assert (
        sweep.main(
            [f"--config={config}", f"--workdir={workdir}", "--report", "--mode=min"], out=out
        )
        == 0
    )
    rows = _read_csv(os.path.join(workdir, "results.csv"))
    assert [r["name"] for r in rows][:3] == ["lr=0.001", "lr=0.002", "lr=0.004"]


def test_stopped_sweep_resumes_skipping_finished_trials(fake):
    config, command, workdir = fake
    argv = [
        sys.executable,
        "-m",
        "experiments.sweep",
        f"--config={config}",
        f"--workdir={workdir}",
        "--sweep_arg=resume",
        f"--trial_command={command}",
    ]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    events = os.path.join(workdir, "events.txt")
    deadline = time.time() + 60
    while "start lr=0.002,sleep=60.0" not in (
        open(events).read() if os.path.exists(events) else ""
    ):
        assert time.time() < deadline and proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 128 + signal.SIGTERM, output
    names = ["lr=0.001", "lr=0.002,sleep=60.0", "lr=0.003"]
    status = [sweep.read_status(os.path.join(workdir, n)).get("status") for n in names]
    # The stopped trial exited 0 (as mmjax.main does after saving) but is not finished.
    assert status == ["done", "interrupted", None]
    assert not os.path.exists(os.path.join(workdir, "lr=0.003"))
    rows = {r["name"]: r for r in _read_csv(os.path.join(workdir, "results.csv"))}
    assert rows["lr=0.003"]["status"] == "pending" and rows["lr=0.001"]["status"] == "done"

    again = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "skipping 1 trial(s) already done" in again.stdout
    runs = [len(open(os.path.join(workdir, n, "runs.txt")).readlines()) for n in names]
    assert runs == [1, 2, 1]
    resumed = sweep.read_status(os.path.join(workdir, "lr=0.002,sleep=60.0"))
    assert resumed["status"] == "done" and resumed["attempts"] == 2
    rows = _read_csv(os.path.join(workdir, "results.csv"))
    assert [r["name"] for r in rows] == ["lr=0.003", "lr=0.002,sleep=60.0", "lr=0.001"]


def test_slurm_launcher_writes_an_array_script_that_runs_a_trial(fake, tmp_path):
    config, command, workdir = fake
    out = io.StringIO()
    argv = [f"--config={config}", f"--workdir={workdir}", "--parallel=2", "--launcher=slurm"]
    assert sweep.main([*argv, f"--trial_command={command}"], out=out) == 0
    script = open(os.path.join(workdir, "sweep.sbatch")).read()
    assert script.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --array=0-3%2", "#SBATCH --signal=B:TERM@120", "#SBATCH --time="):
        assert line in script
    assert f"--output={workdir}/slurm-%A_%a.out" in script
    assert script.count("     set -- ") == 4 and 'case "$SLURM_ARRAY_TASK_ID"' in script
    assert "sbatch " in out.getvalue() and "--report" in out.getvalue()
    assert not os.path.exists(os.path.join(workdir, "lr=0.001"))  # nothing ran here

    # Array index 2 on a "cluster": runs the third trial and records it as the runner does.
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="2", PYTHON=sys.executable)
    result = subprocess.run(["bash", os.path.join(workdir, "sweep.sbatch")], env=env, timeout=60)
    assert result.returncode == 0
    assert sweep.read_status(os.path.join(workdir, "lr=0.002"))["status"] == "done"
    assert sweep.main([*argv[:2], "--report"], out=out) == 0
    rows = _read_csv(os.path.join(workdir, "results.csv"))
    assert [(r["name"], r["status"]) for r in rows][0] == ("lr=0.002", "done")
    assert {r["status"] for r in rows[1:]} == {"pending"}
    # The default command, for the cluster's own python.
    sweep.main([*argv, "--skip_data_prep"], out=out)
    assert '"$PYTHON" -m mmjax.main' in open(os.path.join(workdir, "sweep.sbatch")).read()


# ---------------------------------------------------------------------------------------------
# One real sweep.


@pytest.mark.slow  # 40-90 s: two real trainings; the fake-trial tests cover the runner in CI
def test_real_sweep_of_the_tiny_vqa_config(tmp_path):
    config = os.path.join(ROOT, "configs", "vqa_transformer.py")
    cmd = [
        sys.executable,
        "-m",
        "experiments.sweep",
        f"--config={config}:size=tiny,num_train=64,num_test=16",
        f"--workdir={tmp_path / 'sweep'}",
        "--sweep_arg=lr=1e-3/3e-3,depth=1",
        # Both at once: on 2 cores about as fast as one after the other, and the runner must
        # build the dataset before they start, or the second build fails on the first's.
        "--parallel=2",
        f"--config.data.data_dir={tmp_path / 'data'}",
        "--config.total_steps=10",
        "--config.evals.validation.every=1000",  # only the final evaluations
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _read_csv(tmp_path / "sweep" / "results.csv")
    assert sorted(r["name"] for r in rows) == ["lr=0.001,depth=1", "lr=0.003,depth=1"]
    for row in rows:
        assert row["status"] == "done" and row["step"] == "10"
        assert 0.0 <= float(row["test/accuracy"]) <= 1.0
        assert 0.0 <= float(row["validation/accuracy"]) <= 1.0  # the ranking metric
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "skipping 2 trial(s) already done" in again.stdout
    with open(tmp_path / "sweep" / "sweep.json") as f:
        assert len(json.load(f)["trials"]) == 2

"""The Relation Networks reproduction script: its commands, its results table, a real tiny run."""

import io
import json
import os

import pytest

from mmjax.projects.sort_of_clevr import relation_networks_report as report
from mmjax.projects.sort_of_clevr import reproduce_relation_networks as reproduce

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "size=tiny,num_train=64,num_test=16"


def _accuracy(non_relational, relational, split="validation"):
    subtypes = dict(shape=non_relational, left=non_relational, top=non_relational)
    subtypes.update(closest=relational, furthest=relational, count=relational)
    record = {f"{split}/accuracy/{k}": v for k, v in subtypes.items()}
    record[f"{split}/accuracy/non_relational"] = non_relational
    record[f"{split}/accuracy/relational"] = relational
    record[f"{split}/accuracy"] = (non_relational + relational) / 2
    return record


def _fake_run(directory):
    """A workdir of 2 epochs (25 steps each) that was stopped after step 30 and resumed.

    Validation is evaluated after each epoch, test once, at the end (in the same record).
    """
    os.makedirs(directory)
    config = dict(model=dict(name="cnn_mlp"), batch_size=4, total_steps=50)
    config["data"] = dict(num_train=100)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    records = [
        {"step": 1, "train/loss": 2.3, "train/steps_per_sec": 1 / 60},  # 1 min (compiling)
        {"step": 25, "train/loss": 1.0, "train/steps_per_sec": 24 / 120},  # 2 min
        {"step": 25, **_accuracy(0.70, 0.50)},
        {"step": 30, "train/loss": 0.9, "train/steps_per_sec": 5.0 / 60},  # lost by the kill
        {"step": 30, "train/loss": 0.9, "train/steps_per_sec": 5.0 / 30},  # redone: 0.5 min
        {"step": 50, "train/loss": 0.5, "train/steps_per_sec": 20 / 60},  # 1 min
        {"step": 50, **_accuracy(0.99, 0.94), **_accuracy(0.995, 0.95, "test")},
    ]
    with open(os.path.join(directory, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.write('{"step": 51, "train/lo')  # a line cut short by a kill


def test_summary_puts_epochs_and_training_minutes_behind_each_evaluation(tmp_path):
    _fake_run(tmp_path / "run")
    summary = report.summarize(str(tmp_path / "run"))
    assert [ev["epochs"] for ev in summary["evals"]] == [1.0, 2.0]
    assert [ev["minutes"] for ev in summary["evals"]] == pytest.approx([3.0, 4.5])
    assert summary["final"]["accuracy"]["relational"] == 0.95  # the test split, at the end
    assert summary["final"]["step"] == 50 and summary["final"]["minutes"] == pytest.approx(4.5)
    assert summary["evals"][-1]["accuracy"]["relational"] == 0.94  # the validation split
    assert report.first_reaching(summary["evals"], report.TARGET)["step"] == 50
    assert report.first_reaching(summary["evals"][:1], report.TARGET) is None


def test_results_table_lists_runs_baseline_and_published_numbers(tmp_path):
    _fake_run(tmp_path / "run")
    summary = report.summarize(str(tmp_path / "run"))
    run = dict(name="cnn_mlp", label="CNN+MLP", differs="2.0 of 100 epochs", **summary)
    baseline = {k: 0.5 for k in report.COLUMNS}
    meta = dict(command="python -m x", num_train=100, num_test=200)
    paths = report.write(str(tmp_path / "out"), [run], baseline, meta)
    with open(paths[1]) as f:
        table = f.read()
    row = next(line for line in table.splitlines() if line.startswith("| CNN+MLP |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == ["CNN+MLP", "2.0 of 100 epochs", "2.0", "4.5", "99.5"]
    assert cells[-3:] == ["99.5", "95.0", "epoch 2.0, 4.5 min"]
    assert "| question-only (majority) |" in table and "kimhc6028" in table
    assert "1.00 ep: 70.0 / 50.0, 2.00 ep: 99.0 / 94.0" in table  # validation curves
    with open(paths[0]) as f:
        saved = json.load(f)
    assert saved["runs"][0]["final"]["step"] == 50 and saved["question_only_majority"] == baseline


def test_dry_run_prints_each_models_command_with_its_budget(tmp_path):
    out = io.StringIO()
    argv = [f"--workdir={tmp_path}", "--dry_run", f"--config_args={TINY}", "--g_width=16"]
    argv += ["--epochs=relation_network=2,transformer=0.5", "--config.data.data_dir=/d"]
    assert reproduce.main(argv, out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    rn = next(line for line in lines if "model=relation_network" in line)
    assert "epochs=2.0,g_width=16," in rn and f"--workdir={tmp_path}/relation_network_g16" in rn
    assert rn.endswith("--config.data.data_dir=/d")
    # The transformer's config counts steps: 0.5 epochs of 64 images in batches of 4 = 8 steps.
    transformer = next(line for line in lines if "vqa_transformer.py" in line)
    assert "steps=8" in transformer


@pytest.mark.parametrize(
    "flag", ["--epochs=rn=2", "--epochs=cnn_mlp=x", "--epochs=cnn_mlp=-1", "--models=mlp"]
)
def test_bad_flags_stop_with_a_message(flag, capsys):
    with pytest.raises(SystemExit) as stop:
        reproduce.parse_flags([flag])
    assert stop.value.code == 2
    assert flag.split("=")[0] in capsys.readouterr().err


@pytest.mark.slow
def test_real_tiny_reproduction_runs_resumes_and_extends(tmp_path):
    """Three models for a few steps each, the results written; again: nothing reruns.

    (The transformer's run differs only in its command, which the dry-run test checks.)
    """
    argv = [f"--workdir={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}"]
    argv += ["--models=question_only,cnn_mlp,relation_network"]
    argv += [f"--config_args={TINY}", "--g_width=16", f"--config.data.data_dir={tmp_path}/d"]
    budget = "--epochs=question_only=0.25,cnn_mlp=0.5,relation_network=0.25"
    out = io.StringIO()
    assert reproduce.main([*argv, budget], out=out) == 0, out.getvalue()
    with open(tmp_path / "out" / "results.json") as f:
        runs = {r["name"]: r for r in json.load(f)["runs"]}
    assert set(runs) == {"question_only", "cnn_mlp", "relation_network_g16"}
    assert runs["cnn_mlp"]["final"]["step"] == 16 and runs["cnn_mlp"]["final"]["epochs"] == 0.5
    assert os.path.exists(tmp_path / "out" / "curves.png")
    out = io.StringIO()
    assert reproduce.main([*argv, budget], out=out) == 0
    assert "skipping 3 trial(s) already done" in out.getvalue()
    # A larger budget continues the finished CNN+MLP run from its last step.
    bigger = budget.replace("cnn_mlp=0.5", "cnn_mlp=1")
    out = io.StringIO()
    assert reproduce.main([*argv, bigger], out=out) == 0, out.getvalue()
    assert "skipping 2 trial(s) already done" in out.getvalue()
    with open(tmp_path / "runs" / "cnn_mlp" / "log.txt") as f:
        assert "resumed from the checkpoint at step 16" in f.read()


def test_the_config_sweeps_the_papers_models():
    from mmjax import sweeps

    config = os.path.join(
        ROOT, "mmjax", "projects", "sort_of_clevr", "configs", "vqa_relation_network.py"
    )
    trials = sweeps.load_sweep(f"{config}:size=tiny", "model=cnn_mlp/relation_network,lr=1e-4")
    assert [t.name for t in trials] == [
        "model=cnn_mlp,lr=0.0001",
        "model=relation_network,lr=0.0001",
    ]
    flags = trials[1].main_args(f"{config}:size=tiny")
    assert flags == [
        f"--config={config}:size=tiny,model=relation_network",
        "--config.optim.lr=0.0001",
    ]

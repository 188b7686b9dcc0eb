import importlib.util
import json
import os
import subprocess
import sys

import pytest

from experiments.benchmarks import report

LINES = [
    {
        "section": "ceiling",
        "shape": "[2048, 2048] x [2048, 2048]",
        "median_s": 0.25,
        "gflops_per_s": 68.7,
    },
    {
        "section": "train_step",
        "task": "vqa",
        "example": "image + its 20 questions",
        "batch_size": 8,
        "parameters": 160674,
        "step_ms": 50.0,
        "examples_per_s": 160.0,
        "gflop_per_step": 0.96,
        "gflops_per_s": 19.2,
        "ceiling_gflops_per_s": 68.6,
        "mfu": 0.28,
    },
    {
        "section": "attention",
        "pass": "forward",
        "mask": "none",
        "seq_len": 64,
        "shape": "[8, 64, 4, 16]",
        "ours_ms": 1.0,
        "jax_nn_ms": 0.9,
        "einsum_ms": 1.2,
        "speed_vs_jax_nn": 0.9,
    },
    {
        "section": "attention",
        "pass": "forward",
        "mask": "key padding",
        "seq_len": 64,
        "shape": "[8, 64, 4, 16]",
        "ours_ms": 1.0,
        "jax_nn_ms": 1.5,
        "einsum_ms": 1.2,
        "speed_vs_jax_nn": 1.5,
    },
    {
        "section": "pipeline",
        "task": "vqa",
        "first_epoch_examples_per_s": 800.0,
        "pipeline_examples_per_s": 2000.0,
        "step_examples_per_s": 160.0,
        "first_epoch_supply_ratio": 5.0,
        "supply_ratio": 12.5,
        "constant_batch_step_ms": 50.0,
        "real_data_step_ms": 51.0,
        "real_data_slowdown": 0.02,
    },
]


def test_render_tables_and_goals():
    text = report.render(LINES, "python -m experiments.benchmark", "2 cores", {"ceiling": "N."})
    assert "python -m experiments.benchmark\n```" in text
    goals = {row.split(" | ")[0].lstrip("| "): row for row in text.splitlines() if " | " in row}
    # MFU 28% < 50%; attention: the geometric mean of 0.90x and 1.50x; pipeline goals met; no
    # ViLT.
    assert goals["model FLOPs utilisation of the default VQA train step >= 50% of the ceiling"] == (
        "| model FLOPs utilisation of the default VQA train step >= 50% of the ceiling "
        "| 28.0% | **no** |"
    )
    attention_goal = next(row for key, row in goals.items() if key.startswith("our attention"))
    assert "| 1.16x | yes |" in attention_goal
    slower = [
        dict(line, speed_vs_jax_nn=0.95) if line.get("jax_nn_ms") == 1.5 else line for line in LINES
    ]
    assert "| 0.92x | **no** |" in report.render(slower, "cmd", "machine", {})
    assert "| 12.5x | yes |" in goals["pipeline delivers >= 10x what the VQA step consumes"]
    assert "| +2.0% | yes |" in goals["VQA step on real data within 5% of the constant-batch step"]
    vilt_goal = next(row for key, row in goals.items() if "ViLT" in key)
    assert vilt_goal.endswith("| n/a | not measured |")
    # One table row per line, in its section, with the numbers formatted.
    assert "| [2048, 2048] x [2048, 2048] | 0.25 | 68.7 |" in text
    row = "| vqa | image + its 20 questions | 8 | 160,674 | 50.0 | 160.0 | 0.96 | 19.20 | 68.6 |"
    assert row + " 28.0% |" in text
    assert "| forward | key padding | 64 | [8, 64, 4, 16] | 1.000 | 1.500 | 1.200 | 1.50x |" in text
    assert "\nN.\n" in text
    assert "## Against Hugging Face ViLT" not in text  # sections without lines are left out
    assert "Incomplete" not in text
    partial = report.render(LINES[:2], "cmd", "machine", {}, complete=False)
    assert (
        "**Incomplete**: the run was still going, or was stopped, after 2 measurements" in partial
    )


def test_line_missing_a_field_is_refused_by_name():
    line = dict(LINES[0])
    del line["gflops_per_s"]
    assert report.missing_fields(line) == ["gflops_per_s"]
    assert report.missing_fields({"section": "nonsense"}) == ["section"]
    with pytest.raises(ValueError, match=r"lacks the fields \['gflops_per_s'\]"):
        report.render([line], "cmd", "machine", {})


@pytest.mark.slow
def test_quick_benchmark_prints_complete_lines_and_writes_results(tmp_path):
    results = tmp_path / "RESULTS.md"
    env = dict(os.environ)
    # The test session's XLA flags trade run time for compile time; the benchmark's own setting.
    env.pop("XLA_FLAGS", None)
    out = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "--quick", f"--results={results}"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=True,
    )
    lines = [json.loads(text) for text in out.stdout.splitlines() if text.startswith("{")]
    sections = {line["section"] for line in lines}
    assert {"ceiling", "train_step", "attention", "pipeline"} <= sections
    if importlib.util.find_spec("transformers") is not None:
        assert "vilt" in sections
    for line in lines:
        assert report.missing_fields(line) == [], line
    text = results.read_text()
    assert "python -m experiments.benchmark --quick" in text
    assert "## Goals" in text and "## Train step of each task's default config" in text


def test_time_to_accuracy_reads_evaluations_and_skips_a_line_being_written(tmp_path):
    from experiments.benchmarks import time_to_accuracy

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        '{"step": 10, "train/loss": 0.9}\n'
        '{"step": 500, "test/accuracy/relational": 0.41}\n'
        '{"step": 1000, "test/accuracy/relational": 0.95}\n'
        '{"step": 1500, "test/accu'
    )
    assert time_to_accuracy._evaluations(str(metrics), "test/accuracy/relational") == [
        (500, 0.41),
        (1000, 0.95),
    ]
    assert time_to_accuracy._evaluations(str(tmp_path / "absent.jsonl"), "x") == []

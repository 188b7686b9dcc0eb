import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import types

import numpy as np
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
        "section": "matmul_floor",
        "task": "vqa",
        "products": 171,
        "distinct": 51,
        "share_of_flops": 0.94,
        "products_gflops_per_s": 33.0,
        "floor_ms": 16.0,
        "step_ms": 24.0,
        "floor_share_of_step": 0.667,
        "ceiling_gflops_per_s": 120.0,
        "mfu": 0.2,
        "mfu_bound": 0.29,
    },
    {
        "section": "width_scaling",
        "width": 512,
        "mlp_dim": 2048,
        "parameters": 10236046,
        "step_ms": 380.0,
        "gflop_per_step": 32.2,
        "gflops_per_s": 84.8,
        "ceiling_gflops_per_s": 142.0,
        "mfu": 0.597,
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
    # MFU 28% < 50%, with the matmul floor's bound and the widest model's utilisation;
    # attention: the geometric mean of 0.90x and 1.50x; pipeline goals met; no ViLT.
    assert goals["model FLOPs utilisation of the default VQA train step >= 50% of the ceiling"] == (
        "| model FLOPs utilisation of the default VQA train step >= 50% of the ceiling "
        "| 28.0% (its matmuls alone allow at most 29.0%; 59.7% at width 512) | **no** |"
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
    assert "| vqa | 171 | 51 | 94% | 33.0 | 16.0 | 24.0 | 67% | 120.0 | 20.0% | 29.0% |" in text
    assert "| 512 | 2048 | 10,236,046 | 380.0 | 32.2 | 84.8 | 142.0 | 59.7% |" in text
    assert "\nN.\n" in text
    assert "## Against Hugging Face ViLT" not in text  # sections without lines are left out
    assert "Incomplete" not in text
    partial = report.render(LINES[:2], "cmd", "machine", {}, complete=False)
    assert (
        "**Incomplete**: the run was still going, or was stopped, after 2 measurements" in partial
    )


def test_width_scaling_line_is_the_step_line_with_its_width():
    from experiments.benchmarks import width_scaling

    model = types.SimpleNamespace(width=128, mlp_dim=512)
    line = width_scaling.line(LINES[1], model)
    assert line["section"] == "width_scaling" and (line["width"], line["mlp_dim"]) == (128, 512)
    assert line["mfu"] == LINES[1]["mfu"] and report.missing_fields(line) == []
    assert width_scaling.overrides(128) == ["model.width=128", "model.mlp_dim=512"]
    text = report.render([line], "cmd", "machine", {})
    assert "| 128 | 512 | 160,674 | 50.0 | 0.96 | 19.2 | 68.6 | 28.0% |" in text
    assert "28.0% at width 128" in text  # the MFU goal row names the widest model measured


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
    assert {"ceiling", "train_step", "matmul_floor", "attention", "pipeline"} <= sections
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
        '{"step": 500, "validation/accuracy/relational": 0.41}\n'
        '{"step": 1000, "validation/accuracy/relational": 0.95}\n'
        '{"step": 1500, "validation/accu'
    )
    assert time_to_accuracy._evaluations(str(metrics), "validation/accuracy/relational") == [
        (500, 0.41),
        (1000, 0.95),
    ]
    assert time_to_accuracy._evaluations(str(tmp_path / "absent.jsonl"), "x") == []


def test_matmul_floor_finds_every_dot_of_a_compiled_gradient_with_its_flops():
    import jax
    import jax.numpy as jnp

    from experiments.benchmarks import matmul_floor

    def loss(x, y, a, b):
        # The matmul is fused with its elementwise consumers; the batched einsum is not a
        # plain matmul. The gradients add two dots to each (one per operand).
        return jnp.tanh(x @ y + 1.0).sum() + jnp.einsum("bij,bjk->bik", a, b).sum()

    shapes = [(32, 16), (16, 8), (4, 6, 5), (4, 5, 3)]
    args = [jnp.ones(shape) for shape in shapes]
    forward = jax.jit(loss).lower(*args).compile()
    found = matmul_floor.products(forward.as_text())
    assert sorted(p.flops for p in found.elements()) == [2 * 4 * 6 * 5 * 3, 2 * 32 * 16 * 8]
    batched = next(p for p in found if p.output == (4, 6, 3))
    assert batched.kind == "dot" and batched.lhs_type == "f32"
    assert batched.lhs == (4, 6, 5) and batched.rhs == (4, 5, 3)
    assert batched.arguments == (((2,), (1,)), ((0,), (0,)))

    gradient = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3))).lower(*args).compile()
    flops = sum(p.flops for p in matmul_floor.products(gradient.as_text()).elements())
    assert flops == 3 * (2 * 32 * 16 * 8 + 2 * 4 * 6 * 5 * 3)


def test_matmul_floor_rebuilds_a_convolution_and_its_gradients_as_the_program_runs_them():
    import jax
    import jax.numpy as jnp
    from jax import lax

    from experiments.benchmarks import matmul_floor

    dims = ("NHWC", "HWIO", "NHWC")

    def loss(x, kernel):
        y = lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=dims)
        return (jnp.tanh(y) * 1.5).sum()

    x = jax.random.normal(jax.random.key(0), (4, 15, 15, 3))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 3, 8))
    program = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(x, kernel).compile()
    convolutions = list(matmul_floor.products(program.as_text()))
    # The forward convolution and one for each operand's gradient (a dilated input, a dilated
    # window), each rebuilt with its own strides, padding and dilations.
    assert len(convolutions) == 3 and {c.kind for c in convolutions} == {"convolution"}
    for convolution in convolutions:
        shapes = [
            jax.ShapeDtypeStruct(shape, jnp.float32) for shape in (convolution.lhs, convolution.rhs)
        ]
        assert jax.eval_shape(convolution.apply, *shapes).shape == convolution.output
    forward = next(c for c in convolutions if c.lhs == x.shape and c.rhs == kernel.shape)
    expected = lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=dims)
    np.testing.assert_allclose(forward.apply(x, kernel), expected, rtol=1e-5, atol=1e-5)
    # Counted by hand: output row o of the stride-2 "SAME" convolution (padding 1) reads input
    # rows 2o - 1 .. 2o + 1 of 15, so 2, 3, ..., 3, 2 taps land on the input; the same for
    # columns, times 3 input and 8 output features and 4 images.
    taps = sum(sum(0 <= 2 * o + d < 15 for d in (-1, 0, 1)) for o in range(8)) ** 2
    assert taps == 22 * 22 and forward.flops == 2 * 4 * taps * 3 * 8


def test_matmul_floor_loop_keeps_every_repetition_of_the_product():
    from experiments.benchmarks import matmul_floor

    dot = matmul_floor.Product(
        "dot", (8, 4, 6), (8, 6, 2), "f32", "f32", (8, 4, 2), (((2,), (1,)), ((0,), (0,)))
    )
    program, operands = matmul_floor.repeated(dot, 5)
    # The first product before the loop and one inside it: XLA has not hoisted the loop's dot
    # out as invariant, nor merged it with the first.
    assert sum(matmul_floor.products(program.as_text()).values()) == 2
    assert program(*operands).shape == (8, 4, 2)
    assert float(program(*operands)[0, 0, 0]) == 6.0  # ones: each entry sums 6 products
    with pytest.raises(ValueError, match=r"element type \['f8e4m3'\]"):
        matmul_floor.repeated(dataclasses.replace(dot, rhs_type="f8e4m3"), 2)

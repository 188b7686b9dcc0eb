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


FUSION = {
    "section": "fusion_attention",
    "case": "default",
    "shape": "B=8 N=64 Q=20 L=1 H=4 Dh=16 bias",
    "pass": "forward",
    "ours_ms": 0.25,
    "naive_ms": 0.5,
    "jax_nn_ms": 0.45,
    "speed_vs_naive": 2.0,
    "speed_vs_jax_nn": 1.8,
}
CACHED = {
    "section": "cached_attention",
    "case": "default",
    "shape": "B=50 C=64 t=32 H=4 Dh=32",
    "ours_ms": 0.26,
    "jax_nn_ms": 0.34,
    "einsum_ms": 0.3,
    "uncached_ms": 1.5,
    "speed_vs_jax_nn": 1.3,
    "speed_vs_uncached": 5.77,
}


def budget_line(candidate, minutes, relational, non_relational=0.9):
    return {
        "section": "time_to_accuracy",
        "candidate": candidate,
        "model": candidate,
        "cpu_budget_s": 120.0 * minutes,
        "cpu_minutes_2_cores": minutes,
        "steps": 100,
        "train_wall_s": 200.0,
        "cores_used": 0.5,
        "non_relational": non_relational,
        "relational": relational,
    }


HEADER = {"section": "run", "command": "python -m experiments.benchmark", "started": "today"}


def goal_rows(text):
    return {row.split(" | ")[0].lstrip("| "): row for row in text.splitlines() if " | " in row}


def goal(text, start):
    return next(row for key, row in goal_rows(text).items() if key.startswith(start))


def with_floor_share(lines):
    return [
        dict(line, share_of_bound=line["mfu"] / line["mfu_bound"])
        if line["section"] == "matmul_floor"
        else dict(line, cache_mb=0, uncached_examples_per_s=2000.0, uncached_supply_ratio=12.5)
        if line["section"] == "pipeline"
        else line
        for line in lines
    ]


def test_render_page_tables_runs_and_goals():
    lines = with_floor_share(LINES[:4] + LINES[6:]) + [FUSION, CACHED]
    tta = [budget_line("mmjax", 0.5, 0.86), budget_line("mmjax", 1.25, 0.95)]
    tta += [
        budget_line(c, m, 0.3 + m / 10) for c in ("vilt", "relation_network") for m in (1.25, 5)
    ]
    stopped = dict(HEADER, note="stopped early")
    runs = {"default": [HEADER, *lines], "time_to_accuracy": [stopped, *tta]}
    text = report.render_page(runs, {"ceiling": "N."})
    assert "\n- `runs/time_to_accuracy.jsonl`: stopped early\n" in text
    assert "| `runs/default.jsonl` | `python -m experiments.benchmark` | `today` |" in text
    # MFU: the step at 0.20 of the ceiling against 0.29 at its matmuls' floor: 69%.
    assert goal(text, "MFU: the default VQA train step").endswith(
        "| 69.0% (step 20.0% of the ceiling, its matmuls alone 29.0%) | **no** |"
    )
    assert "| 59.7% (runs: 59.7%) | **no** |" in goal(text, "MFU: the width-512")
    assert "| least 2.00x | yes |" in goal(
        text, "attention: image_text_attention at least as fast as the naive"
    )
    assert "| least 1.80x | yes |" in goal(
        text, "attention: image_text_attention at least as fast as jax"
    )
    assert "| least 5.77x | yes |" in goal(text, "attention: the decoder's cached")
    assert "| 5.0x | **no** |" in goal(text, "pipeline: first-epoch")
    assert "| 12.5x | yes |" in goal(text, "pipeline: later-epoch")
    assert "| +2.0% | yes |" in goal(text, "pipeline: the VQA step fed")
    assert goal(text, "equal work").endswith("| n/a | not measured |")
    # mmjax reached 94% at 1.25 minutes; its rivals stayed at 42.5% and 80% (60% at 5 min).
    assert goal(text, "time to accuracy").endswith(
        "| mmjax: at 1.25 min (ViLT: at 5.00 min; RN: at 5.00 min) | yes |"
    )
    # One table row per line, in its section, with the run and the numbers formatted.
    assert "| `[2048, 2048] x [2048, 2048]` | 0.25 | 68.7 | default |" in text
    row = "| vqa | `image + its 20 questions` | 8 | 160,674 | 50.0 | 160.0 | 0.96 | 19.20 | 68.6 |"
    assert row + " 28.0% | default |" in text
    assert (
        "| vqa | 171 | 51 | 94% | 33.0 | 16.0 | 24.0 | 67% | 120.0 | 20.0% | 29.0% | 69.0% |"
        in text
    )
    assert "| 512 | 2048 | 10,236,046 | 380.0 | 32.2 | 84.8 | 142.0 | 59.7% | default |" in text
    fusion_row = (
        "| default | `B=8 N=64 Q=20 L=1 H=4 Dh=16 bias` | forward | 0.250 | 0.500 | 0.450 |"
    )
    assert fusion_row + " 2.00x | 1.80x | default |" in text
    assert "| relation_network | 600 | 5.00 | 100 | 200 | 0.50 | 90.0% | 80.0% |" in text
    assert "\nN.\n" in text
    assert "## Against Hugging Face ViLT" not in text  # sections without lines are left out


def test_time_to_accuracy_goal_is_missed_when_a_rival_reaches_60_first_or_is_missing():
    runs = {"t": [budget_line("mmjax", 5, 0.95), budget_line("vilt", 1.25, 0.61)]}
    runs["t"].append(budget_line("relation_network", 10, 0.2))
    text = report.render_page(runs, {})
    assert goal(text, "time to accuracy").endswith(
        "| mmjax: at 5.00 min (ViLT: at 1.25 min; RN: not by 10.00 min, best 20.0%) | **no** |"
    )
    runs = {"t": [budget_line("mmjax", 0.5, 0.95), budget_line("vilt", 5, 0.3)]}
    assert "| **no** |" in goal(report.render_page(runs, {}), "time to accuracy")  # no RN line
    runs = {"t": [budget_line("mmjax", 20, 0.93)]}
    assert goal(report.render_page(runs, {}), "time to accuracy").endswith("| not measured |")


def test_read_runs_skips_a_line_being_written(tmp_path):
    (tmp_path / "b.jsonl").write_text(json.dumps(HEADER) + "\n" + json.dumps(CACHED) + "\n")
    (tmp_path / "a.jsonl").write_text(json.dumps(FUSION) + '\n{"section": "fus')
    (tmp_path / "notes.txt").write_text("not a run")
    (tmp_path / "quick.jsonl").write_text(json.dumps(dict(FUSION, ours_ms=0.3)) + "\n")
    runs = report.read_runs(str(tmp_path))
    assert list(runs) == ["a", "b", "quick"]  # quick last: the goals read fuller runs first
    assert runs["a"] == [FUSION] and runs["b"] == [HEADER, CACHED]


def test_width_scaling_line_is_the_step_line_with_its_width():
    from experiments.benchmarks import width_scaling

    model = types.SimpleNamespace(width=128, mlp_dim=512)
    line = width_scaling.line(LINES[1], model)
    assert line["section"] == "width_scaling" and (line["width"], line["mlp_dim"]) == (128, 512)
    assert line["mfu"] == LINES[1]["mfu"] and report.missing_fields(line) == []
    assert width_scaling.overrides(128) == ["model.width=128", "model.mlp_dim=512"]
    text = report.render_page({"r": [line]}, {})
    assert "| 128 | 512 | 160,674 | 50.0 | 0.96 | 19.2 | 68.6 | 28.0% | r |" in text
    assert goal(text, "MFU: the width-512").endswith("| not measured |")


def test_line_missing_a_field_is_refused_by_name():
    line = dict(LINES[0])
    del line["gflops_per_s"]
    assert report.missing_fields(line) == ["gflops_per_s"]
    assert report.missing_fields({"section": "nonsense"}) == ["section"]
    with pytest.raises(ValueError, match=r"lacks the fields \['gflops_per_s'\]"):
        report.render_page({"r": [line]}, {})


@pytest.mark.slow
def test_quick_benchmark_prints_complete_lines_and_writes_results(tmp_path):
    # About 2-4 minutes on 2 shared cores.
    results = tmp_path / "README.md"
    env = dict(os.environ)
    # The test session's XLA flags trade run time for compile time; the benchmark's own setting.
    env.pop("XLA_FLAGS", None)
    out = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "--quick", f"--results={results}"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        check=True,
    )
    lines = [json.loads(text) for text in out.stdout.splitlines() if text.startswith("{")]
    sections = {line["section"] for line in lines}
    expected = {"ceiling", "train_step", "matmul_floor", "pipeline", "fusion_attention"}
    assert expected | {"cached_attention"} <= sections
    if importlib.util.find_spec("transformers") is not None:
        assert "vilt" in sections
    for line in lines:
        assert report.missing_fields(line) == [], line
    run_file = tmp_path / "runs" / "quick.jsonl"
    assert [json.loads(t) for t in run_file.read_text().splitlines()[1:]] == lines
    text = results.read_text()
    assert "`python -m experiments.benchmark --quick`" in text
    assert "## Goals" in text and "## Train step of each task's default config" in text


def test_fusion_attention_candidates_compute_the_same_outputs():
    from experiments.benchmarks import fusion_attention

    for bias in (False, True):
        shape = fusion_attention.Shape("small", 2, 7, 3, 5, 2, 4, bias)
        args = tuple(fusion_attention.inputs(shape).values())
        outputs = [np.asarray(fn(*args)) for fn in fusion_attention.IMPLEMENTATIONS.values()]
        assert outputs[0].shape == (2, 3, 5, 2, 4)
        for other in outputs[1:]:
            np.testing.assert_allclose(other, outputs[0], rtol=1e-5, atol=1e-5)
    # A padded text key gets no weight: changing its value leaves every output as it was.
    inputs = fusion_attention.inputs(fusion_attention.Shape("s", 2, 7, 3, 5, 2, 4, False))
    assert not bool(inputs["text_mask"][0, 0, -1])
    changed = dict(inputs, v_text=inputs["v_text"].at[:, :, -1].add(100.0))
    for fn in fusion_attention.IMPLEMENTATIONS.values():
        np.testing.assert_allclose(fn(**changed), fn(**inputs), rtol=1e-5, atol=1e-5)


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


def test_rendered_page_numbers_are_all_in_its_run_files(tmp_path):
    from results_tables import page_problems

    folder = tmp_path / "results" / "benchmarks"
    (folder / "runs").mkdir(parents=True)
    header = dict(HEADER, started="2026-12-05 02:50 UTC", load_average=[1.51, 2.0, 3.25])
    lines = with_floor_share(LINES) + [FUSION, CACHED]
    lines = [dict(line, load_average_1min=2.5) for line in lines]
    tta = [budget_line(c, m, 0.3 + m / 10) for c in ("mmjax", "vilt") for m in (1.25, 5)]
    runs = {"default": [header, *lines], "time_to_accuracy": [header, *tta]}
    for name, run_lines in runs.items():
        text = "".join(json.dumps(line) + "\n" for line in run_lines)
        (folder / "runs" / f"{name}.jsonl").write_text(text)
    page = folder / "README.md"
    page.write_text(report.render_page(report.read_runs(str(folder / "runs")), {}))
    assert page_problems(str(page)) == []
    # A number the run files do not hold is found.
    page.write_text(page.read_text().replace("| 68.7 |", "| 68.9 |"))
    assert len(page_problems(str(page))) == 1

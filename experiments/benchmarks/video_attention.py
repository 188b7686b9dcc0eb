r"""Joint against factorised ViViT attention: step time and memory at 8, 16 and 32 frames.

For each clip length T, one training step (forward and backward of a loss on the pooled vector,
jit-compiled, float32) of two video encoders of the same width and number of blocks
(`mmjax.models.video.ViViT`, tubelets of 2 frames x 8x8 pixels on 64x64 frames: T' = T / 2
time steps of 64 tokens):

  joint       4 blocks of attention over all T' x 64 tokens (ViViT model 1)
  factorised  2 spatial blocks over each time step's 64 tokens, then 2 temporal blocks over
              the T' frame tokens (model 2)

Per line: the median step time over `--reps` turns (the two kinds timed in turns, A B B A ...,
so the machine's load drifts alike for both), XLA's FLOP count of the step, and memory from
XLA's analysis of the compiled step: `temp_bytes` (the peak of its temporaries, which holds
the attention weights kept for the backward pass) and `argument_bytes` (parameters and clip).

  python -m experiments.benchmarks.video_attention [--frames=8,16,32] [--reps=5] \
      [--out=experiments/results/video_attention/video_attention.json]

prints one JSON line per (frames, kind) and, with --out, writes them all as one JSON file;
`--render=FILE.json` prints that file's results as the results page's markdown table.
Results: experiments/results/video_attention/README.md.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments.benchmarks.timing import interleaved_medians, xla_flops
from mmjax.models.video import ViViT

flags.DEFINE_list("frames", ["8", "16", "32"], "Clip lengths T (multiples of the tubelet, 2).")
flags.DEFINE_integer("reps", 5, "Timed turns per kind (the median is reported).")
flags.DEFINE_integer("batch", 4, "Clips per step.")
flags.DEFINE_string("out", None, "Also write every line to this JSON file.")
flags.DEFINE_string("render", None, "Print the markdown table of this --out file; measure nothing.")
FLAGS = flags.FLAGS

SIZE, PATCH, TUBELET, WIDTH, HEADS, MLP = 64, 8, 2, 64, 4, 256
KINDS = {
    "joint": dict(kind="joint", depth=4),
    "factorised": dict(kind="factorised", spatial_depth=2, temporal_depth=2),
}


def _step(model: ViViT, params, video):
    """One jit-compiled training step's gradients (loss: mean square of the pooled vector)."""

    def loss(p):
        _, pooled = model.apply(p, video, method=model.encode)
        return jnp.mean(pooled**2)

    return jax.jit(jax.grad(loss)), (params,)


def measure(frames: int, reps: int, batch: int) -> list[dict]:
    """One result line per kind at clip length `frames` (see the module docstring)."""
    video = np.random.default_rng(0).integers(0, 256, (batch, frames, SIZE, SIZE, 3), np.uint8)
    steps, lines = {}, {}
    for name, options in KINDS.items():
        model = ViViT(
            WIDTH, patch_size=PATCH, tubelet=TUBELET, num_heads=HEADS, mlp_dim=MLP, **options
        )
        params = model.init(jax.random.key(0), video)
        step, args = _step(model, params, video)
        start = time.perf_counter()
        compiled = step.lower(*args).compile()
        compile_seconds = time.perf_counter() - start
        memory = compiled.memory_analysis()
        grid = frames // TUBELET
        tokens = grid * (SIZE // PATCH) ** 2
        lines[name] = dict(
            frames=frames,
            kind=name,
            tokens=tokens,
            longest_attention=tokens if name == "joint" else max(grid, (SIZE // PATCH) ** 2),
            batch=batch,
            params=int(sum(np.size(x) for x in jax.tree.leaves(params))),
            gflops=xla_flops(compiled) / 1e9,
            temp_bytes=int(memory.temp_size_in_bytes),
            argument_bytes=int(memory.argument_size_in_bytes),
            compile_seconds=round(compile_seconds, 2),
        )
        steps[name] = lambda compiled=compiled, args=args: jax.block_until_ready(compiled(*args))
    medians = interleaved_medians(steps, reps=reps, warmup=1)
    for name, seconds in medians.items():
        lines[name]["step_seconds"] = seconds
    return list(lines.values())


def add_growth(results: list[dict]) -> list[dict]:
    """Each line with step_ms, temp_mb and their growth against the same kind's shortest clip."""
    shortest = min(r["frames"] for r in results)
    first = {r["kind"]: r for r in results if r["frames"] == shortest}
    for r in results:
        base = first[r["kind"]]
        r["step_ms"] = round(r["step_seconds"] * 1e3, 1)
        r["temp_mb"] = round(r["temp_bytes"] / 1e6, 1)
        r["step_growth"] = round(r["step_seconds"] / base["step_seconds"], 2)
        r["temp_growth"] = round(r["temp_bytes"] / base["temp_bytes"], 2)
    return results


def render(results: list[dict]) -> str:
    """The markdown table of result lines (after `add_growth`): one row per (frames, kind)."""
    rows = [
        "| frames | kind | tokens | longest attention | step (ms) | step growth | GFLOPs | "
        "temporaries (MB) | memory growth |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        rows.append(
            f"| {r['frames']} | {r['kind']} | {r['tokens']} | {r['longest_attention']} | "
            f"{r['step_ms']:.0f} | {r['step_growth']:.1f} | {r['gflops']:.2f} | "
            f"{r['temp_mb']:.1f} | {r['temp_growth']:.1f} |"
        )
    return "\n".join(rows)


def main(argv) -> None:
    """Measures every clip length and prints (and optionally writes) the lines."""
    del argv
    if FLAGS.render:
        with open(FLAGS.render) as f:
            print(render(json.load(f)["results"]))
        return
    start, load = time.time(), os.getloadavg()
    results = []
    for frames in (int(f) for f in FLAGS.frames):
        for line in measure(frames, FLAGS.reps, FLAGS.batch):
            print(json.dumps(line), flush=True)
            results.append(line)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    machine = dict(
        jax=jax.__version__,
        backend=jax.default_backend(),
        cpu_count=os.cpu_count(),
        processor=platform.processor() or platform.machine(),
        load_average_start=[round(x, 2) for x in load],
        load_average_end=[round(x, 2) for x in os.getloadavg()],
        wall_seconds=round(time.time() - start, 1),
        process_cpu_seconds=round(usage.ru_utime + usage.ru_stime, 1),
    )
    print(json.dumps({"machine": machine}), flush=True)
    results = add_growth(results)
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump({"machine": machine, "results": results}, f, indent=1)


if __name__ == "__main__":
    app.run(main)

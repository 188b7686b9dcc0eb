"""Autoencoder train-step speed before and after the issue-26 config, side by side.

  python -m experiments.autoencoder_step_speed [--reps=5] [--steps=10] \
      [--out=experiments/results/autoencoder/step_speed.json]

"before" is the autoencoder config as it was before issue 26 (15x15-pixel patches, 25 tokens,
z of 64, patch decoder; kept as experiments/results/autoencoder/config_before.py), "after" is
configs/autoencoder.py. Each is set up and timed by the benchmark's own train-step code
(`experiments.benchmarks.train_steps`: the trainer's compiled step on a constant batch of real
examples), in turns with each other and with the 2048^2 float32 matmul whose FLOP/s is the
utilisation's denominator, so all three see the same load. Writes one JSON object per config
(step_ms, examples_per_s, gflop_per_step, mfu, ...) to --out and prints them.
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np

from experiments.benchmarks import train_steps
from experiments.benchmarks.timing import interleaved_medians, matmul, xla_flops

HERE = os.path.dirname(os.path.abspath(__file__))
BEFORE = os.path.join(HERE, "results", "autoencoder", "config_before.py")
OUT = os.path.join(HERE, "results", "autoencoder", "step_speed.json")


def compare(reps: int, steps: int) -> list[dict]:
    """One line per config ("before", "after"): step time, examples/s, GFLOP/step and MFU."""
    train_steps.TASK_CONFIGS["autoencoding_before"] = (BEFORE, "image + its caption")
    benches = {
        "before": train_steps.setup("autoencoding_before"),
        "after": train_steps.setup("autoencoding"),
    }
    ceiling, ceiling_flops = matmul(*train_steps.CEILING)
    candidates = {name: (lambda b=b: b.run(steps)) for name, b in benches.items()}
    seconds = interleaved_medians({**candidates, "ceiling": ceiling}, reps)
    ceiling_gflops = ceiling_flops / seconds["ceiling"] / 1e9
    lines = []
    for name, bench in benches.items():
        step_s = seconds[name] / steps
        flops = xla_flops(bench.train_step)
        model = bench.config.model
        lines.append(
            {
                "config": name,
                "patch_size": int(model.patch_size),
                "image_tokens": int(model.get("keep_tokens", 0)) or None,
                "image_decoder": model.image_decoder_kind,
                "z_dim": int(model.z_dim),
                "batch_size": int(bench.config.batch_size),
                "parameters": sum(
                    int(np.prod(p.shape)) for p in jax.tree.leaves(bench.state.params)
                ),
                "step_ms": 1e3 * step_s,
                "examples_per_s": bench.config.batch_size / step_s,
                "gflop_per_step": flops / 1e9,
                "gflops_per_s": flops / step_s / 1e9,
                "ceiling_gflops_per_s": ceiling_gflops,
                "mfu": flops / step_s / 1e9 / ceiling_gflops,
                "reps": reps,
                "steps_per_rep": steps,
                "load_average": os.getloadavg()[0],
            }
        )
    return lines


def main() -> None:
    """Parses the flags, measures, writes --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    lines = compare(args.reps, args.steps)
    for line in lines:
        print(json.dumps(line))
    with open(args.out, "w") as f:
        command = "python -m experiments.autoencoder_step_speed"
        json.dump({"command": command, "lines": lines}, f, indent=1)


if __name__ == "__main__":
    main()

"""A task's train-step speed before and after its issue-26 config, side by side.

  python -m experiments.step_speed_before_after --task=retrieval|autoencoding [--reps=5]
      [--steps=10] [--out=experiments/results/<page>/step_speed.json]

"before" is the task's config as it was before issue 26, kept as
experiments/results/<page>/config_before.py (retrieval: conv stem, 25 tokens, batch 64;
autoencoding: 15x15-pixel patches, 25 tokens, z of 64, patch decoder); "after" is the task's
default config. Each is set up and timed by the benchmark's own train-step code
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


def _retrieval_model(model) -> dict:
    return {
        "stem": model.stem,
        "image_tokens": int(model.keep_tokens) or None,
        "width": int(model.width),
    }


def _autoencoder_model(model) -> dict:
    return {
        "patch_size": int(model.patch_size),
        "image_tokens": int(model.get("keep_tokens", 0)) or None,
        "image_decoder": model.image_decoder_kind,
        "z_dim": int(model.z_dim),
    }


# task -> (results page folder, one example in words, the model fields a line reports)
TASKS = {
    "retrieval": ("retrieval", "image + 1 caption", _retrieval_model),
    "autoencoding": ("autoencoder", "image + its caption", _autoencoder_model),
}


def compare(task: str, reps: int, steps: int) -> list[dict]:
    """One line per config ("before", "after"): step time, examples/s, GFLOP/step and MFU."""
    page, example, model_fields = TASKS[task]
    before = os.path.join(HERE, "results", page, "config_before.py")
    train_steps.TASK_CONFIGS[f"{task}_before"] = (before, example)
    benches = {
        "before": train_steps.setup(f"{task}_before"),
        "after": train_steps.setup(task),
    }
    ceiling, ceiling_flops = matmul(*train_steps.CEILING)
    candidates = {name: (lambda b=b: b.run(steps)) for name, b in benches.items()}
    seconds = interleaved_medians({**candidates, "ceiling": ceiling}, reps)
    ceiling_gflops = ceiling_flops / seconds["ceiling"] / 1e9
    lines = []
    for name, bench in benches.items():
        step_s = seconds[name] / steps
        flops = xla_flops(bench.train_step)
        lines.append(
            {
                "config": name,
                **model_fields(bench.config.model),
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
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    out = args.out or os.path.join(HERE, "results", TASKS[args.task][0], "step_speed.json")
    lines = compare(args.task, args.reps, args.steps)
    for line in lines:
        print(json.dumps(line))
    with open(out, "w") as f:
        command = f"python -m experiments.step_speed_before_after --task={args.task}"
        json.dump({"command": command, "lines": lines}, f, indent=1)


if __name__ == "__main__":
    main()

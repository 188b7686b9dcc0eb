"""Utilisation of the VQA train step as its model widens, its matmuls growing with it.

The default VQA model (width 64, MLP 128) is made of matmuls too thin for XLA:CPU to run near
the machine's peak (see the matmul floor). The same model and data at larger widths, with an
MLP 4x the width (depth, heads and batch as the default), show how the step's utilisation
grows with its matmuls: what mmjax's step reaches where the model's size, not the framework,
sets the limit. Each width's step is timed in turns with the ceiling matmul, as the
default's is.
"""

from __future__ import annotations

from experiments.benchmarks import train_steps


def overrides(width: int) -> list[str]:
    """Config overrides of the default VQA config for a model of `width` (MLP 4x wider)."""
    return [f"model.width={width}", f"model.mlp_dim={4 * width}"]


def line(step_line: dict, model) -> dict:
    """A `width_scaling` line from the `train_step` line of a VQA step of `model` (config.model).

    The step's time, FLOPs and utilisation, with the model's width and MLP width.
    """
    return dict(step_line, section="width_scaling", width=model.width, mlp_dim=model.mlp_dim)


def measure(bench: train_steps.StepSetup, reps: int) -> dict:
    """One `width_scaling` line: `bench`'s step time, FLOPs and utilisation, with its width.

    Each of `reps` repetitions runs 16 steps at width 64 and fewer as the model widens
    (16 x 64 / width, at least 2), so that no width takes long.
    """
    steps = max(2, 16 * 64 // bench.config.model.width)
    return line(train_steps.measure(bench, reps, steps), bench.config.model)

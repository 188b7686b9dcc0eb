"""Train-step speed of each task's default config: time, examples/s, FLOPs and utilisation.

The step is the trainer's own (`mmjax.train.steps.compile_steps`), on the config's mesh and
shardings, fed one constant batch of real training examples.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import jax
import numpy as np

from experiments.benchmarks.timing import interleaved_medians, matmul, xla_flops
from mmjax.config_loader import load_config
from mmjax.experiment import Experiment
from mmjax.train import sharding
from mmjax.train import steps as steps_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# task -> (config file with arguments, relative to the repository, and what one example of its
# batch is). Adding a task to the benchmark is one line here.
TASK_CONFIGS = {
    "vqa": ("configs/vqa_transformer.py", "image + its 20 questions"),
    "captioning": ("configs/caption_transformer.py", "image + its 5 captions"),
    "retrieval": ("configs/retrieval_dual_encoder.py", "image + 1 caption"),
    "autoencoding": ("configs/autoencoder.py", "image + its caption"),
    "video_captioning": ("configs/video_caption.py", "clip of 8 frames + its caption"),
    "video_retrieval": ("configs/video_retrieval.py", "clip of 8 frames + 1 caption"),
}


@dataclasses.dataclass
class StepSetup:
    """A task's config, source, compiled steps, and a state and batch to run them on.

    Attributes:
      name: the task's name in `TASK_CONFIGS`.
      example: what one example of the batch is, in words.
      config: the loaded config.
      task: the built task (prepared: tokenizers built).
      mesh: the config's device mesh.
      source: the training split, random access.
      steps: the trainer's jitted functions.
      train_step: `steps.train_step` compiled ahead of time for `state` and `batch` (so that
        XLA's cost analysis and the timed calls share one compilation).
      state: the current TrainState (donated by each step, so always use the latest).
      batch: a constant global batch of the first `config.batch_size` training examples.
    """

    name: str
    example: str
    config: object
    task: object
    mesh: jax.sharding.Mesh
    source: object
    steps: steps_module.CompiledSteps
    train_step: Callable
    state: object
    batch: dict

    def run(self, steps: int, next_batch: Callable[[], dict] | None = None) -> None:
        """Runs `steps` train steps the way the trainer's loop does, then waits for the last.

        Each step is dispatched before the previous one's metrics are waited for, so preparing
        the next batch overlaps the running step. Batches come from `next_batch` (default:
        the constant batch).
        """
        previous = None
        for _ in range(steps):
            batch = self.batch if next_batch is None else next_batch()
            self.state, metrics = self.train_step(self.state, batch)
            if previous is not None:
                jax.block_until_ready(previous)
            previous = metrics
        jax.block_until_ready(previous)


def setup(name: str, overrides: list[str] | None = None) -> StepSetup:
    """Builds the default config of task `name` (with `overrides`) up to a ready train state.

    The run is assembled as `mmjax.main` assembles it (`Experiment.assemble`), its tokenizers
    kept in memory only.
    """
    spec, example = TASK_CONFIGS[name]
    config = load_config(os.path.join(REPO, spec), overrides or [])
    experiment = Experiment.assemble(config)
    mesh = experiment.mesh()
    batch = sharding.global_batch(experiment.local_batch(config.batch_size), mesh)
    steps = steps_module.compile_steps(config, experiment.task, mesh, batch)
    state = steps.init_state()
    train_step = steps.train_step.lower(state, batch).compile()
    source = experiment.dataset.source("train")
    return StepSetup(
        name, example, config, experiment.task, mesh, source, steps, train_step, state, batch
    )


CEILING = (2048, 2048, 2048)  # the matmul whose FLOP/s is the utilisation's denominator


def measure(bench: StepSetup, reps: int, steps: int) -> dict:
    """One `train_step` line: step time, examples/s and XLA's FLOPs per step.

    Each of `reps` repetitions times `steps` steps run as the trainer's loop runs them, in turns
    with the 2048^2 float32 matmul of `CEILING`, so that both see the same load. `mfu` is the
    step's FLOP/s over the matmul's (model FLOPs utilisation, counting what XLA counts).
    """
    flops = xla_flops(bench.train_step)
    ceiling, ceiling_flops = matmul(*CEILING)
    seconds = interleaved_medians({"step": lambda: bench.run(steps), "ceiling": ceiling}, reps)
    step_s = seconds["step"] / steps
    ceiling_gflops = ceiling_flops / seconds["ceiling"] / 1e9
    params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(bench.state.params))
    gflops = flops / step_s / 1e9
    return {
        "section": "train_step",
        "task": bench.name,
        "example": bench.example,
        "batch_size": bench.config.batch_size,
        "parameters": params,
        "step_ms": 1e3 * step_s,
        "examples_per_s": bench.config.batch_size / step_s,
        "gflop_per_step": flops / 1e9,
        "gflops_per_s": gflops,
        "ceiling_gflops_per_s": ceiling_gflops,
        "mfu": gflops / ceiling_gflops,
    }

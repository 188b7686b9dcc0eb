"""One model trained for budgets of process CPU seconds, scored on validation at each budget.

  python -m experiments.benchmarks.budget_training --candidate=mmjax --budgets=60,300,600

prints one JSON line per budget (a `time_to_accuracy` line, see `report.py`). The clock is
this process's CPU time (`time.process_time`: every thread, the input pipeline's included)
spent training; the validation evaluations at the budgets are left out of it. On a machine
shared with other jobs, CPU seconds are what a process got, so two models given the same CPU
budget got the same amount of this machine even when they ran under different loads
(contention still costs some CPU time in cache misses: stated in the results).

Candidates (`CANDIDATES`): the default mmjax VQA config, the Relation Network of the
Sort-of-CLEVR project (its default config: g of width 256, as in the paper), and Hugging
Face's ViLT (PyTorch, randomly initialised, the shape of our default model; `vilt.py`) fed by
the default VQA config's pipeline: the same images, pixels, questions and validation split,
scored by the same evaluator. ViLT trains with AdamW, the default config's learning rate
schedule (warmup, cosine over its steps), b2, weight decay and clipping.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import sys
import tempfile
import time

import jax
import numpy as np

from mmjax import evaluators
from mmjax.config_loader import load_config
from mmjax.data import pipeline
from mmjax.experiment import Experiment
from mmjax.train import sharding
from mmjax.train.optimizer import learning_rate_schedule
from mmjax.train.steps import compile_steps

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VQA = "configs/vqa_transformer.py"
RN = "mmjax/projects/sort_of_clevr/configs/vqa_relation_network.py:model=relation_network"
# name -> (config, what is trained).
CANDIDATES = {
    "mmjax": (VQA, "mmjax VQATransformer (default config)"),
    "relation_network": (RN, "Relation Network (mmjax Sort-of-CLEVR project, g width 256)"),
    "vilt": (VQA, "HF ViltForQuestionAnswering (PyTorch, random init, our model's shape)"),
}


class MmjaxRun:
    """A config's training state, training batches and validation evaluator, in this process.

    `step()` runs one train step as the trainer's loop does (dispatched before the previous
    one is waited for); `validate()` scores the current parameters on the validation split.
    """

    def __init__(self, spec: str, overrides: list[str], workdir: str):
        self.config = load_config(os.path.join(REPO, spec), overrides)
        experiment = Experiment.assemble(self.config)
        self.mesh, self.task = experiment.mesh(), experiment.task
        data = self.config.data
        self.batches = iter(
            pipeline.train_dataset(
                experiment.dataset.source("train"),
                self.task.preprocess,
                self.config.batch_size,
                seed=data.shuffle_seed,
                num_threads=data.num_threads,
                cache_mb=data.get("cache_mb", 0),
            )
        )
        init_batch = sharding.global_batch(
            experiment.local_batch(self.config.batch_size), self.mesh
        )
        self.steps = compile_steps(self.config, self.task, self.mesh, init_batch)
        self.state, self.step_count, self._previous = self.steps.init_state(), 0, None
        evaluation = dict(self.config.evals.validation.to_dict(), bootstrap_samples=0)
        context = {"workdir": workdir, **self.task.evaluator_context}
        self.evaluator = evaluators.build_evaluator("validation", evaluation, context)
        self.validation = pipeline.eval_dataset(
            self.task.dataset.eval_source(evaluation["split"]),
            self.task.preprocess,
            evaluation["batch_size"],
        )

    @property
    def finished(self) -> bool:
        """Whether the config's schedule (`total_steps`) has run to its end."""
        return self.step_count >= self.config.total_steps

    def step(self) -> None:
        """One train step on the next batch."""
        batch = sharding.step_batch(next(self.batches), self.mesh)
        self.state, metrics = self.steps.train_step(self.state, batch)
        if self._previous is not None:
            jax.block_until_ready(self._previous)
        self._previous, self.step_count = metrics, self.step_count + 1

    def sync(self) -> None:
        """Waits for the last step dispatched."""
        jax.block_until_ready(self._previous)

    def predictions(self, batch: dict) -> dict:
        """The task's predictions for one local validation batch, on the host."""
        return jax.device_get(
            self.steps.predict(self.state.params, sharding.step_batch(batch, self.mesh))
        )

    def validate(self, images: int = 0) -> dict[str, float]:
        """The validation evaluator's scores of the current parameters (no intervals).

        On the first `images` images of the split (whole batches; 0: all of them).
        """
        self.sync()
        batches = iter(self.validation)
        if images:
            size = self.config.evals.validation.batch_size
            batches = itertools.islice(batches, -(-images // size))
        pairs = ((jax.device_get(b), self.predictions(b)) for b in batches)
        return self.evaluator.evaluate(pairs)


class ViltRun(MmjaxRun):
    """ViLT (PyTorch) trained on the batches of the default VQA config, scored as ours is."""

    def __init__(self, spec: str, overrides: list[str], workdir: str, threads: int):
        super().__init__(spec, overrides, workdir)
        from experiments.benchmarks.vilt import ViltStep

        bench = type("Bench", (), {})()  # what ViltStep reads of a StepSetup
        bench.config, bench.task = self.config, self.task
        first = jax.device_get(next(iter(self.validation)))
        bench.batch = {key: value[: self.config.batch_size] for key, value in first.items()}
        optim = self.config.optim
        self.vilt = ViltStep(bench, threads, lr=optim.lr, b2=optim.b2)
        self.schedule = learning_rate_schedule(optim, self.config.total_steps)
        del self.state  # the mmjax parameters are not trained

    def step(self) -> None:
        """One ViLT step on the next batch, at the schedule's learning rate for it."""
        from experiments.benchmarks.vilt import torch_inputs

        for group in self.vilt.optimizer.param_groups:
            group["lr"] = float(self.schedule(self.step_count))
        self.vilt.train(*torch_inputs(next(self.batches)))
        self.step_count += 1

    def sync(self) -> None:
        """Nothing to wait for: PyTorch's steps run eagerly."""

    def predictions(self, batch: dict, images_per_call: int = 2) -> dict:
        """ViLT's answers [B, Q] for a local validation batch, `images_per_call` images a call."""
        import torch

        from experiments.benchmarks.vilt import torch_inputs

        self.vilt.model.eval()
        answers = []
        with torch.no_grad():
            for start in range(0, len(batch["image"]), images_per_call):
                inputs, _ = torch_inputs(batch, start, start + images_per_call)
                answers.append(self.vilt.model(**inputs).logits.argmax(-1).numpy())
        self.vilt.model.train()
        return {"answer": np.concatenate(answers).reshape(batch["answer"].shape).astype(np.int32)}


def run(candidate: str, budgets: list[float], threads: int, eval_images: int = 0) -> list[dict]:
    """Trains `candidate` until each of `budgets` (CPU seconds of training) and scores it there.

    Scored on the first `eval_images` validation images (0: all). A model whose config's
    schedule ends first is scored at its end for the budgets left.
    """
    spec, model = CANDIDATES[candidate]
    with tempfile.TemporaryDirectory(prefix="mmjax-budget-") as workdir:
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        load_start = os.getloadavg()
        if candidate == "vilt":
            trainer = ViltRun(spec, [], workdir, threads)
        else:
            trainer = MmjaxRun(spec, [], workdir)
        setup_cpu = time.process_time() - start_cpu
        train_cpu, train_wall, lines, scores = 0.0, 0.0, [], None
        for budget in sorted(budgets):
            if not trainer.finished:
                cpu, wall = time.process_time(), time.perf_counter()
                while train_cpu + time.process_time() - cpu < budget and not trainer.finished:
                    trainer.step()
                trainer.sync()
                train_cpu += time.process_time() - cpu
                train_wall += time.perf_counter() - wall
                scores = None
            if scores is None:
                eval_start = time.perf_counter()
                scores = trainer.validate(eval_images)
                eval_wall = time.perf_counter() - eval_start
            lines.append(
                {
                    "section": "time_to_accuracy",
                    "candidate": candidate,
                    "model": model,
                    "config": spec,
                    "cpu_budget_s": budget,
                    "cpu_minutes_2_cores": budget / 120.0,
                    "steps": trainer.step_count,
                    "finished_schedule": trainer.finished,
                    "train_cpu_s": train_cpu,
                    "train_wall_s": train_wall,
                    "cores_used": train_cpu / max(train_wall, 1e-9),
                    "setup_cpu_s": setup_cpu,
                    "eval_wall_s": eval_wall,
                    "eval_images": eval_images or "all",
                    "accuracy": scores["accuracy"],
                    "non_relational": scores["accuracy/non_relational"],
                    "relational": scores["accuracy/relational"],
                    "load_average_start": list(load_start),
                    "load_average": list(os.getloadavg()),
                    "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "wall_since_start_s": time.perf_counter() - start_wall,
                }
            )
            print(json.dumps(lines[-1]), flush=True)
    return lines


def main(argv: list[str] | None = None) -> None:
    """Parses --candidate and --budgets (CPU seconds, comma-separated) and runs them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidate", choices=sorted(CANDIDATES), required=True)
    parser.add_argument("--budgets", required=True, help="CPU seconds of training, e.g. 600,1200")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--eval_images", type=int, default=0, help="0: the whole split")
    args = parser.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",")]
    run(args.candidate, budgets, args.threads, args.eval_images)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

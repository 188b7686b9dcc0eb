"""The one training loop, which knows nothing of any task.

A task plugs in through the contract of `mmjax.tasks.base.Task` (preprocess, init_params,
loss, predict); the compiled functions come from `mmjax.train.steps`.

Sections: mesh and data; state and shardings; restore; compiled steps; the loop with logs,
evaluations and checkpoints on their own schedules; SIGTERM/SIGINT save and exit cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from mmjax import evaluators
from mmjax.config_utils import ConfigError
from mmjax.data import pipeline
from mmjax.evaluators.examples import save_examples
from mmjax.train import sharding
from mmjax.train.checkpoints import Checkpointer
from mmjax.train.evaluation_error import EvaluationError
from mmjax.train.metric_writers import MetricWriter
from mmjax.train.progress import Progress
from mmjax.train.steps import compile_steps, state_bytes
from mmjax.workdir import Workdir


class _StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def make_mesh(config) -> jax.sharding.Mesh:
    """The device mesh of `config.mesh` (with `config.sharding.fsdp`, FSDP over all devices)."""
    fsdp = bool(config.get("sharding", {}).get("fsdp", False))
    return sharding.make_mesh(sharding.resolve_mesh_config(config.mesh, fsdp))


def check_batch_sizes(config, mesh=None) -> None:
    """Raises ConfigError naming the numbers when a batch does not divide over the devices."""
    mesh = make_mesh(config) if mesh is None else mesh
    shards = sharding.data_parallel_size(mesh)
    sizes = {"batch_size": config.batch_size}
    sizes.update({f"evals.{name}.batch_size": ev.batch_size for name, ev in config.evals.items()})
    for what, batch_size in sizes.items():
        if batch_size % shards or batch_size % jax.process_count():
            raise ConfigError(
                f"{what}={batch_size} does not divide over {shards} data-parallel devices "
                f"in {jax.process_count()} processes"
            )
    microbatches = config.get("microbatches", 1)
    if microbatches < 1 or config.batch_size % (microbatches * shards):
        raise ConfigError(
            f"batch_size={config.batch_size} does not split into microbatches={microbatches} "
            f"micro-batches over {shards} data-parallel devices"
        )


def _scalars(metrics) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def _train_iterator(config, task):
    """The training split and this process's checkpointable iterator of local batches."""
    process, processes = jax.process_index(), jax.process_count()
    source = task.dataset.source("train")
    dataset = pipeline.train_dataset(
        source,
        task.preprocess,
        config.batch_size // processes,
        seed=config.data.shuffle_seed,
        process_index=process,
        process_count=processes,
        num_threads=config.data.num_threads,
        cache_mb=config.data.get("cache_mb", 0),
    )
    return source, iter(dataset)


def _eval_setups(config, task, workdir: Workdir) -> dict:
    """Name -> (evaluator, eval dataset of this process's padded batches), per config.evals."""
    process, processes = jax.process_index(), jax.process_count()
    # The workdir is for evaluators that write files (e.g. reconstruction grids).
    context = {"workdir": workdir.path, **task.evaluator_context}
    setups = {}
    for name, ev in config.evals.items():
        evaluator = evaluators.build_evaluator(name, ev.to_dict(), context)
        batches = pipeline.eval_dataset(
            task.dataset.eval_source(ev.split),
            task.preprocess,
            ev.batch_size // processes,
            process,
            processes,
        )
        setups[name] = (evaluator, batches)
    return setups


def _log_state_size(abstract, mesh) -> None:
    num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract.params))
    per_device, total = state_bytes(abstract)
    logging.info(
        "model has %s parameters; mesh %s; parameters and optimizer state: %.2f MiB per "
        "device, %.2f MiB in all",
        f"{num_params:,}",
        dict(mesh.shape),
        per_device / 2**20,
        total / 2**20,
    )


def _restore(checkpointer: Checkpointer, steps, train_iter):
    """The newest checkpoint's state (the data iterator restored too), else step 0's."""
    try:
        restored = checkpointer.restore_latest(steps.abstract_state)
    except BaseException:
        checkpointer.close()  # its background threads would otherwise outlive the error
        raise
    if restored is None:
        logging.info("starting from step 0")
        return steps.init_state()
    step, state, data_state = restored
    if data_state is not None:
        train_iter.set_state(data_state)
    logging.info("resumed from the checkpoint at step %d", step)
    return state


def _evaluate(setups: dict, names, params, predict, mesh, writer, step: int) -> dict:
    """Runs the evaluators `names` on `params`; writes and returns "<name>/<metric>" scores."""
    results = {}
    for name in names:
        evaluator, dataset = setups[name]
        start = time.perf_counter()
        pairs = (
            (_to_host(local), _to_host(predict(params, sharding.step_batch(local, mesh))))
            for local in dataset
        )
        try:
            if hasattr(evaluator, "use_params"):  # it embeds inputs of its own (zero_shot)
                evaluator.use_params(params)
            scores = evaluator.evaluate(pairs)
        except Exception as error:  # noqa: BLE001 - any failure stops the run at this boundary
            raise EvaluationError(name, type(evaluator).__name__, step, error) from error
        # Per-example scores (workdir/eval/<name>_step<N>.npz), for mmjax.compare.
        save_examples(evaluator, os.path.dirname(writer.path), name, step, writer.enabled)
        scores["seconds"] = time.perf_counter() - start
        results.update({f"{name}/{k}": v for k, v in scores.items()})
    writer.write(step, results)
    logging.info(
        "eval at step %d: %s",
        step,
        # The headline numbers: overall scores, not each slice's.
        ", ".join(
            f"{k}={v:.4f}" for k, v in results.items() if k.count("/") == 1 and ".ci_" not in k
        ),
    )
    return results


class _FiniteCheck:
    """Raises FloatingPointError for a step that was not finite (unless on_nonfinite='skip')."""

    def __init__(self, config, last_saved: int | None):
        self.skip = config.get("on_nonfinite", "stop") == "skip"
        self.last_saved = last_saved

    def __call__(self, at_step: int, metrics) -> None:
        if self.skip or bool(metrics["finite"]):
            return
        values = _scalars({k: metrics[k] for k in ("loss", "grad_norm", "update_norm")})
        saved = "none" if self.last_saved is None else f"step {self.last_saved}"
        raise FloatingPointError(
            f"step {at_step} is not finite (loss {values['loss']}, gradient norm "
            f"{values['grad_norm']}, update norm {values['update_norm']}) and was not applied; "
            f"last good checkpoint: {saved}. "
            "Set config.on_nonfinite='skip' to skip such steps instead"
        )


def train_and_evaluate(config, workdir: Workdir, task) -> dict[str, float]:
    """Trains `task` per `config` in `workdir` (resuming if possible); returns final evals.

    Evaluations run every `config.evals.<name>.every` steps (0: only at the end) and all of
    them once at the end.
    """
    # ---------------------------------------------------------------- mesh and data
    mesh = make_mesh(config)
    check_batch_sizes(config, mesh)
    train_source, train_iter = _train_iterator(config, task)
    setups = _eval_setups(config, task, workdir)

    # ---------------------------------------------------------------- state and shardings
    local_batch = config.batch_size // jax.process_count()
    example = jax.tree.map(lambda x: np.stack([x] * local_batch), task.preprocess(train_source[0]))
    steps = compile_steps(config, task, mesh, sharding.global_batch(example, mesh))
    _log_state_size(steps.abstract_state, mesh)

    # ---------------------------------------------------------------- restore
    checkpointer = Checkpointer(workdir.checkpoints, keep=config.keep_checkpoints)
    state = _restore(checkpointer, steps, train_iter)

    # ---------------------------------------------------------------- the loop
    writer = MetricWriter(workdir.path)
    step, total = int(state.step), config.total_steps
    progress = Progress(total, config.batch_size, start_step=step)
    check_finite = _FiniteCheck(config, (checkpointer.steps() or [None])[-1])
    previous = None  # (step, metrics) of the step before, checked once the next is dispatched
    try:
        with _StopSignal() as stop:
            while step < total:
                batch = sharding.step_batch(next(train_iter), mesh)
                state, metrics = steps.train_step(state, batch)
                step += 1
                if previous is not None:
                    check_finite(*previous)  # waits for the step before, not for this one
                previous = (step, metrics)
                if step % config.log_every == 0 or step == total or step == 1:
                    check_finite(step, metrics)
                    scalars = _scalars(metrics)
                    del scalars["finite"]
                    rates = progress.update(step)
                    writer.write(step, {f"train/{k}": v for k, v in {**scalars, **rates}.items()})
                    logging.info(progress.line(step, scalars["loss"], rates))
                if step % config.checkpoint_every == 0 or step == total or stop.received:
                    check_finite(step, metrics)
                    checkpointer.save(step, state, train_iter.get_state())
                    check_finite.last_saved = step
                if stop.received:
                    checkpointer.wait()
                    logging.warning("%s received: saved step %d, exiting", stop.received, step)
                    writer.close()
                    raise SystemExit(0)
                due = [n for n, ev in config.evals.items() if ev.every and step % ev.every == 0]
                if due and step < total:
                    try:
                        _evaluate(setups, due, state.params, steps.predict, mesh, writer, step)
                    except EvaluationError:
                        # No training is lost: this step is saved (a no-op if it just was).
                        check_finite(step, metrics)
                        checkpointer.save(step, state, train_iter.get_state())
                        raise
    finally:
        # However the loop ends, a save in flight is finished, never left half-written.
        checkpointer.close()
    final = _evaluate(setups, list(config.evals), state.params, steps.predict, mesh, writer, step)
    writer.close()
    return final


def _to_host(tree):
    """A pytree of global arrays or process-local batches as full NumPy arrays on every host."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)

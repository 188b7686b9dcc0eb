"""The one training loop, which knows nothing of any task.

A task plugs in through:

  task.preprocess(record) -> example    (NumPy dict, one example)
  task.init_params(rng, batch) -> params
  task.loss(params, batch, rng) -> (scalar loss, dict of scalar metrics)
  task.predict(params, batch) -> dict of arrays for the evaluators

Sections: mesh and data; state and shardings; restore; compiled steps; the loop with logs,
evaluations and checkpoints on their own schedules; SIGTERM/SIGINT save and exit cleanly.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils

from mmjax import evaluators
from mmjax.config_utils import ConfigError
from mmjax.data import pipeline
from mmjax.models import partitioning
from mmjax.train import sharding
from mmjax.train.checkpoints import Checkpointer
from mmjax.train.metric_writers import MetricWriter
from mmjax.train.optimizer import learning_rate_schedule, make_optimizer
from mmjax.train.progress import Progress
from mmjax.train.state import TrainState
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


def train_and_evaluate(config, workdir: Workdir, task) -> dict[str, float]:
    """Trains `task` per `config` in `workdir` (resuming if possible); returns final evals.

    Evaluations run every `config.evals.<name>.every` steps (0: only at the end) and all of
    them once at the end.
    """
    # ---------------------------------------------------------------- mesh and data
    mesh = make_mesh(config)
    check_batch_sizes(config, mesh)
    process, processes = jax.process_index(), jax.process_count()
    local_batch = config.batch_size // processes

    train_source = task.dataset.source("train")
    train_iter = iter(
        pipeline.train_dataset(
            train_source,
            task.preprocess,
            local_batch,
            seed=config.data.shuffle_seed,
            process_index=process,
            process_count=processes,
            num_threads=config.data.num_threads,
            cache_mb=config.data.get("cache_mb", 0),
        )
    )
    eval_setups = {}
    for name, ev in config.evals.items():
        source = task.dataset.source(ev.split)
        eval_setups[name] = (
            # The workdir is for evaluators that write files (e.g. reconstruction grids).
            evaluators.build_evaluator(
                name, ev.to_dict(), {"workdir": workdir.path, **task.evaluator_context}
            ),
            pipeline.eval_dataset(
                source, task.preprocess, ev.batch_size // processes, process, processes
            ),
        )

    # ---------------------------------------------------------------- state and shardings
    example = jax.tree.map(lambda x: np.stack([x] * local_batch), task.preprocess(train_source[0]))
    steps = compile_steps(config, task, mesh, sharding.global_batch(example, mesh))
    abstract = steps.abstract_state
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

    # ---------------------------------------------------------------- restore
    checkpointer = Checkpointer(workdir.checkpoints, keep=config.keep_checkpoints)
    try:
        restored = checkpointer.restore_latest(abstract)
    except BaseException:
        checkpointer.close()  # its background threads would otherwise outlive the error
        raise
    if restored is None:
        state = steps.init_state()
        logging.info("starting from step 0")
    else:
        step, state, data_state = restored
        if data_state is not None:
            train_iter.set_state(data_state)
        logging.info("resumed from the checkpoint at step %d", step)

    # ---------------------------------------------------------------- compiled steps
    train_step, predict = steps.train_step, steps.predict

    # ---------------------------------------------------------------- the loop
    writer = MetricWriter(workdir.path)

    def evaluate(step: int, names) -> dict[str, float]:
        results = {}
        for name in names:
            evaluator, dataset = eval_setups[name]
            start = time.perf_counter()
            pairs = (
                (
                    _to_host(local),
                    _to_host(predict(state.params, sharding.step_batch(local, mesh))),
                )
                for local in dataset
            )
            scores = evaluator.evaluate(pairs)
            scores["seconds"] = time.perf_counter() - start
            results.update({f"{name}/{k}": v for k, v in scores.items()})
        writer.write(step, results)
        logging.info(
            "eval at step %d: %s",
            step,
            # The headline numbers: overall scores, not each slice's.
            ", ".join(f"{k}={v:.4f}" for k, v in results.items() if k.count("/") == 1),
        )
        return results

    step = int(state.step)
    total = config.total_steps
    progress = Progress(total, config.batch_size, start_step=step)
    last_saved = (checkpointer.steps() or [None])[-1]
    skip_nonfinite = config.get("on_nonfinite", "stop") == "skip"

    def check_finite(at_step: int, metrics) -> None:
        if skip_nonfinite or bool(metrics["finite"]):
            return
        values = _scalars({k: metrics[k] for k in ("loss", "grad_norm", "update_norm")})
        raise FloatingPointError(
            f"step {at_step} is not finite (loss {values['loss']}, gradient norm "
            f"{values['grad_norm']}, update norm {values['update_norm']}) and was not applied; "
            f"last good checkpoint: {'none' if last_saved is None else f'step {last_saved}'}. "
            "Set config.on_nonfinite='skip' to skip such steps instead"
        )

    previous = None  # (step, metrics) of the step before, checked once the next is dispatched
    try:
        with _StopSignal() as stop:
            while step < total:
                batch = sharding.step_batch(next(train_iter), mesh)
                state, metrics = train_step(state, batch)
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
                    last_saved = step
                if stop.received:
                    checkpointer.wait()
                    logging.warning("%s received: saved step %d, exiting", stop.received, step)
                    writer.close()
                    raise SystemExit(0)
                due = [n for n, ev in config.evals.items() if ev.every and step % ev.every == 0]
                if due and step < total:
                    evaluate(step, due)
    finally:
        # However the loop ends, a save in flight is finished, never left half-written.
        checkpointer.close()
    final = evaluate(step, list(config.evals))
    writer.close()
    return final


@dataclasses.dataclass(frozen=True)
class CompiledSteps:
    """What the loop runs, built by `compile_steps`; benchmarks build it the same way.

    Attributes:
      abstract_state: the TrainState as ShapeDtypeStructs carrying their shardings.
      state_sharding: the TrainState's pytree of NamedShardings.
      init_state: () -> the TrainState at step 0 (jitted, placed by `state_sharding`).
      train_step: jitted (state, global batch) -> (state, metrics); the state is donated.
      predict: jitted (params, global batch) -> the task's predictions.
    """

    abstract_state: TrainState
    state_sharding: TrainState
    init_state: Callable[[], TrainState]
    train_step: Callable
    predict: Callable


def compile_steps(config, task, mesh, init_batch) -> CompiledSteps:
    """The jitted init, train and predict functions of `task` under `config` on `mesh`.

    `init_batch` is a global batch shaped like the training batches (it fixes the parameter
    shapes). Nothing is compiled until a function is first called.
    """
    optimizer = make_optimizer(config.optim, config.total_steps)
    rng = jax.random.key_data(jax.random.key(config.seed))

    def init_state(rng, batch):
        return init_train_state(task, optimizer, rng, batch)

    abstract = jax.eval_shape(init_state, rng, init_batch)
    replicated = sharding.replicated(mesh)
    state_sharding = sharding.tree_shardings(abstract, mesh, config.get("sharding", {}))
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sharding
    )
    init = jax.jit(init_state, out_shardings=state_sharding)

    schedule = learning_rate_schedule(config.optim, config.total_steps)
    batch_spec = sharding.batch_sharding(mesh)
    rules = config.get("sharding", {}).get("activation_rules", None)

    def traced_with_activation_sharding(fn):
        def traced(*args):
            with partitioning.activation_sharding(mesh, rules):
                return fn(*args)

        return traced

    train_step = make_train_step(task, optimizer, schedule, config.get("microbatches", 1))
    train_step = jax.jit(
        traced_with_activation_sharding(train_step),
        in_shardings=(state_sharding, batch_spec),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )
    predict = jax.jit(
        traced_with_activation_sharding(task.predict),
        in_shardings=(state_sharding.params, batch_spec),
        out_shardings=batch_spec,
    )
    return CompiledSteps(
        abstract, state_sharding, lambda: init(rng, init_batch), train_step, predict
    )


def init_train_state(task, optimizer, rng, batch) -> TrainState:
    """The state at step 0: `task`'s initial parameters for `batch`, rng the raw key data."""
    params = task.init_params(jax.random.wrap_key_data(rng), batch)
    zero = jnp.zeros((), jnp.int32)
    return TrainState(zero, params, optimizer.init(params), rng, zero)


def state_bytes(abstract_state) -> tuple[int, int]:
    """(bytes on the most loaded device, bytes in all) of a pytree of sharded ShapeDtypeStructs."""
    per_device = total = 0
    for leaf in jax.tree.leaves(abstract_state):
        itemsize = np.dtype(leaf.dtype).itemsize
        total += int(np.prod(leaf.shape)) * itemsize
        per_device += int(np.prod(leaf.sharding.shard_shape(leaf.shape))) * itemsize
    return per_device, total


def make_train_step(task, optimizer, schedule, microbatches: int = 1):
    """The train step (state, batch) -> (state, metrics), to be jit-compiled.

    With `microbatches` > 1 the batch [B, ...] is split into that many micro-batches of
    B / microbatches examples (example i goes to micro-batch i mod microbatches, so each
    device's rows spread evenly over them), their gradients and metrics are averaged in a
    `lax.scan`, and one update is applied: the same update as the whole batch at once when the
    loss is a mean over equally many examples, with the activations of one micro-batch alive.

    A step whose loss, gradient norm or update norm is not finite is not applied: parameters
    and optimizer state stay as they were, `state.skipped` counts it, and metrics["finite"] is
    False. So no NaN ever reaches the state, and no checkpoint can hold one; whether the run
    then stops or goes on is the loop's decision (`config.on_nonfinite`).
    """
    grad_fn = jax.value_and_grad(task.loss, has_aux=True)

    def accumulated_grads(params, batch, rng):
        def split(x):
            x = x.reshape(x.shape[0] // microbatches, microbatches, *x.shape[1:])
            return jnp.swapaxes(x, 0, 1)

        def one(total, inputs):
            index, micro = inputs
            out = grad_fn(params, micro, jax.random.fold_in(rng, index))
            return jax.tree.map(jnp.add, total, out), None

        micro = jax.tree.map(split, batch)
        zeros = jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[0], micro), rng)
        total, _ = jax.lax.scan(
            one, jax.tree.map(jnp.zeros_like, zeros), (jnp.arange(microbatches), micro)
        )
        return jax.tree.map(lambda x: x / microbatches, total)

    def train_step(state: TrainState, batch):
        step_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        if microbatches > 1:
            (loss, metrics), grads = accumulated_grads(state.params, batch, step_rng)
        else:
            (loss, metrics), grads = grad_fn(state.params, batch, step_rng)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        grad_norm, update_norm = optax.tree.norm(grads), optax.tree.norm(updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(update_norm)

        def if_finite(new, old):
            return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

        params = if_finite(jax.tree.map(jnp.add, state.params, updates), state.params)
        skipped = state.skipped + (~finite).astype(jnp.int32)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, update_norm=update_norm)
        metrics.update(learning_rate=schedule(state.step), finite=finite, skipped_steps=skipped)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            opt_state=if_finite(opt_state, state.opt_state),
            skipped=skipped,
        )
        return new_state, metrics

    return train_step


def _to_host(tree):
    """A pytree of global arrays or process-local batches as full NumPy arrays on every host."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)

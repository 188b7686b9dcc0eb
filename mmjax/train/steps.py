"""The compiled functions of training: init, train step (with gradient accumulation), predict.

`compile_steps` builds them for a task on a mesh, with the shardings of `config.sharding`; the
trainer's loop and the benchmarks run the same functions. A run with `config.init_from` starts
from the parameters it names (`mmjax.weights.init_from`); one with `config.optim.frozen` does
not train the parameters it matches (`mmjax.train.optimizer`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.models import partitioning
from mmjax.train import sharding
from mmjax.train.optimizer import frozen_mask, learning_rate_schedule, make_optimizer
from mmjax.train.state import TrainState
from mmjax.weights import init_from, tree


@dataclasses.dataclass(frozen=True)
class CompiledSteps:
    """What the loop runs, built by `compile_steps`; benchmarks build it the same way.

    Attributes:
      abstract_state: the TrainState as ShapeDtypeStructs carrying their shardings.
      state_sharding: the TrainState's pytree of NamedShardings.
      init_state: () -> the TrainState at step 0 (jitted, placed by `state_sharding`), with
        the parameters of `config.init_from` when it names any.
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
    rng = jax.random.key_data(jax.random.key(config.seed))
    abstract_params = jax.eval_shape(task.init_params, jax.random.wrap_key_data(rng), init_batch)
    optimizer = make_optimizer(config.optim, config.total_steps)
    frozen = frozen_mask(config.optim, abstract_params)

    def init_state(rng, batch, loaded=None):
        return init_train_state(task, optimizer, rng, batch, loaded)

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

    train_step = make_train_step(
        task, optimizer, schedule, config.get("microbatches", 1), frozen=frozen
    )
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

    def first_state():
        if not init_from.is_set(config):
            return init(rng, init_batch)
        plan = init_from.make_plan(config.init_from, abstract.params)
        return init(rng, init_batch, plan.loaded)

    return CompiledSteps(abstract, state_sharding, first_state, train_step, predict)


def init_train_state(task, optimizer, rng, batch, loaded=None) -> TrainState:
    """The state at step 0: `task`'s initial parameters for `batch`, rng the raw key data.

    `loaded` ({parameter path: array}, from `config.init_from`) replaces those parameters
    before the optimizer state is made from them.
    """
    params = task.init_params(jax.random.wrap_key_data(rng), batch)
    if loaded:
        params = tree.replace(params, loaded)
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


def make_train_step(task, optimizer, schedule, microbatches: int = 1, frozen=None):
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

    `frozen` (a pytree of bools like the params, `optimizer.frozen_mask`) marks parameters that
    are not trained: the loss sees them through `stop_gradient` (no backward pass through a
    frozen tower; their gradients are zeros) and they are kept as they were, not added to.
    """
    loss = task.loss
    if frozen is not None:

        def loss(params, batch, rng):
            params = jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, frozen)
            return task.loss(params, batch, rng)

    grad_fn = jax.value_and_grad(loss, has_aux=True)

    def apply_updates(params, updates):
        if frozen is None:
            return jax.tree.map(jnp.add, params, updates)
        return jax.tree.map(lambda p, u, f: p if f else p + u, params, updates, frozen)

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

        params = if_finite(apply_updates(state.params, updates), state.params)
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

r"""Seconds per training step of the Relation Network on this machine, by variant.

  python -m mmjax.projects.sort_of_clevr.probes.relation_network_speed \
      [--variants=256,f,float32/256,d,float32/...] [--images=4] [--steps=5]

A variant is `g_width,f|d,dtype`: g's width, its first layer factorised (f) or the direct
concatenation (d), and the compute dtype. Each variant's jit-compiled Adam step runs on
`--images` random 75x75 images x 20 random question codes (the config's batch: 4 x 20); the
first step (compilation) is not timed. Prints one line per variant.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.projects.sort_of_clevr.relation import RelationNetwork

DEFAULT = "256,f,float32/256,d,float32/128,f,float32/64,f,float32/256,f,bfloat16"


def step_seconds(g_width: int, factorised: bool, dtype, images: int, steps: int) -> float:
    """Mean seconds of one compiled training step (after a first, compiling one)."""
    rng = np.random.default_rng(0)
    pixels = jnp.asarray(rng.integers(0, 256, (images, 75, 75, 3)), jnp.uint8)
    codes = jnp.asarray(rng.integers(0, 2, (images, 20, 11)), jnp.float32)
    answers = jnp.asarray(rng.integers(0, 10, (images, 20)))
    model = RelationNetwork(g_width=g_width, factorised=factorised, dtype=dtype)
    params = jax.jit(model.init)(jax.random.key(0), pixels, codes)
    optimizer = optax.adam(2.5e-4)

    def loss(params, rng):
        logits, _ = model.apply(params, pixels, codes, train=True, rngs={"dropout": rng})
        return optax.softmax_cross_entropy_with_integer_labels(logits, answers).mean()

    @jax.jit
    def step(params, opt_state, rng):
        value, grads = jax.value_and_grad(loss)(params, rng)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    state = (params, optimizer.init(params))
    *state, value = step(*state, jax.random.key(0))
    value.block_until_ready()
    start = time.perf_counter()
    for i in range(steps):
        *state, value = step(*state, jax.random.key(i + 1))
    value.block_until_ready()
    return (time.perf_counter() - start) / steps


def main() -> None:
    """Parses the flags and prints each variant's seconds per step."""
    parser = argparse.ArgumentParser(
        prog="python -m mmjax.projects.sort_of_clevr.probes.relation_network_speed"
    )
    parser.add_argument("--variants", default=DEFAULT, help="'/'-separated g_width,f|d,dtype")
    parser.add_argument("--images", type=int, default=4, help="images per step (x 20 questions)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    flags = parser.parse_args()
    for variant in filter(None, flags.variants.split("/")):
        try:
            width, kind, dtype = variant.split(",")
            if kind not in ("f", "d"):
                raise ValueError
            width, dtype = int(width), jnp.dtype(dtype)
        except (ValueError, TypeError):
            parser.error(f"--variants: {variant!r} is not g_width,f|d,dtype")
        seconds = step_seconds(width, kind == "f", dtype, flags.images, flags.steps)
        first = "factorised" if kind == "f" else "direct"
        print(
            f"g width {width:4d}, {first:10s} first layer, {dtype.name:8s}: {seconds:.2f} s/step "
            f"of {flags.images} images x 20 questions",
            flush=True,
        )


if __name__ == "__main__":
    main()

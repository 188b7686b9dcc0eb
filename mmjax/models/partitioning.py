"""Logical sharding constraints on activations.

Models name the axes of their activations ("batch", "length", "embed", "mlp", ...) with
`constrain(x, names)`. Outside `activation_sharding(mesh, rules)` that is the identity, so
models run unchanged on one device and in tests; inside it (the trainer traces its steps
there) each name maps through `rules` to mesh axes and the activation gets
`jax.lax.with_sharding_constraint`. Names without a rule, or whose mesh axes do not divide the
dimension, stay unconstrained.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping, Sequence

import jax
from jax.sharding import NamedSharding, PartitionSpec

# Data parallel and FSDP split the batch; tensor parallelism splits the MLP hidden units and
# the attention heads over "model".
DEFAULT_RULES = {"batch": ("data", "fsdp"), "mlp": ("model",), "heads": ("model",)}

_active = threading.local()


@contextlib.contextmanager
def activation_sharding(
    mesh: jax.sharding.Mesh, rules: Mapping[str, Sequence[str]] | None = None
) -> Iterator[None]:
    """Within this context `constrain` places activations on `mesh` by `rules`."""
    previous = getattr(_active, "value", None)
    _active.value = (mesh, DEFAULT_RULES if rules is None else rules)
    try:
        yield
    finally:
        _active.value = previous


def active():
    """The (mesh, rules) of the enclosing `activation_sharding`, or None outside one."""
    return getattr(_active, "value", None)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """`x` with one logical axis name (or None) per dimension turned into a sharding constraint."""
    active = getattr(_active, "value", None)
    if active is None:
        return x
    mesh, rules = active
    spec = []
    for size, name in zip(x.shape, names, strict=True):
        axes = tuple(a for a in rules.get(name, ()) if a in mesh.shape and mesh.shape[a] > 1)
        fits = axes and size % math.prod(mesh.shape[a] for a in axes) == 0
        spec.append(axes if fits else None)
    if not any(spec):
        return x  # nothing to split on this mesh: leave the choice to the compiler
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(*spec)))

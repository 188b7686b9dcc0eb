"""Device mesh and shardings: jit with NamedSharding over a Mesh is the only parallel path.

The mesh has named axes from `config.mesh` (`data`, `fsdp`, optionally `model`). The batch is
split over `data` and `fsdp` together. Parameters and optimizer state are placed by
`config.sharding.rules`, a list of (regex, rule) pairs matched against each leaf's path
("params/fusion/block_0/mlp/fc1/kernel", "opt_state/1/0/mu/fusion/..."; the first match wins):

  "replicate"           a full copy on every device;
  "fsdp"                split the largest dimension that the `fsdp` axis divides, for leaves of
                        at least `config.sharding.fsdp_min_size` elements (smaller ones, and
                        ones with no divisible dimension, stay replicated);
  (None, "model"), ...  an explicit PartitionSpec, one entry (axis name, tuple of names or
                        None) per dimension.

Leaves no rule matches are replicated (data parallel), or FSDP-split when
`config.sharding.fsdp` is set.
"""

from __future__ import annotations

import math
import re

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from mmjax.config_utils import ConfigError

BATCH_AXES = ("data", "fsdp")


def resolve_mesh_config(mesh_config, fsdp: bool) -> dict[str, int]:
    """`config.mesh` as a dict; with `fsdp` and the default data=-1, fsdp=1 it swaps the two."""
    sizes = {name: int(size) for name, size in mesh_config.items()}
    if fsdp and sizes.get("data") == -1 and sizes.get("fsdp", 1) == 1:
        sizes.update(data=1, fsdp=-1)
    return sizes


def make_mesh(mesh_config, devices=None) -> jax.sharding.Mesh:
    """A mesh with the axes of `mesh_config` (name -> size, one size may be -1 = the rest).

    Raises ConfigError naming the sizes when they do not multiply to the device count.
    """
    devices = jax.devices() if devices is None else devices
    names = list(mesh_config.keys())
    sizes = [int(mesh_config[n]) for n in names]
    if sizes.count(-1) > 1:
        raise ConfigError(f"mesh {dict(zip(names, sizes))}: at most one axis may be -1")
    if any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"mesh {dict(zip(names, sizes))}: sizes must be positive or -1")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ConfigError(
                f"mesh {dict(zip(names, sizes))} does not divide {len(devices)} devices"
            )
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ConfigError(
            f"mesh {dict(zip(names, sizes))} needs {math.prod(sizes)} devices, "
            f"but {len(devices)} are available"
        )
    return jax.make_mesh(
        tuple(sizes), tuple(names), axis_types=(AxisType.Auto,) * len(names), devices=devices
    )


def data_parallel_size(mesh: jax.sharding.Mesh) -> int:
    """Number of shards the batch dimension is split into."""
    return math.prod(mesh.shape[a] for a in batch_axes(mesh))


def batch_axes(mesh: jax.sharding.Mesh) -> tuple[str, ...]:
    """The mesh axes the batch dimension is split over."""
    return tuple(a for a in BATCH_AXES if a in mesh.shape)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the data axes, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(batch_axes(mesh)))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Fully replicated sharding."""
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: dict, mesh: jax.sharding.Mesh) -> dict:
    """Assembles each process's local NumPy batch into global arrays sharded on the batch axis."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )


def step_batch(local_batch: dict, mesh: jax.sharding.Mesh) -> dict:
    """The batch for a step jitted with `batch_sharding(mesh)` as its batch's in_shardings.

    In a single process that is the NumPy batch itself: the jitted call places it, which costs
    the calling thread less than a separate `jax.device_put` of the batch, time it shares with
    the step's own work on a small machine (`python -m experiments.benchmark` measures the
    pipeline against the step).
    With several processes, `global_batch`.
    """
    return local_batch if jax.process_count() == 1 else global_batch(local_batch, mesh)


def fsdp_spec(shape: tuple[int, ...], axis_size: int, min_size: int) -> PartitionSpec:
    """Splits the largest dimension of `shape` that `axis_size` divides over "fsdp"."""
    if axis_size == 1 or math.prod(shape) < min_size:
        return PartitionSpec()
    candidates = [d for d in np.argsort(shape)[::-1] if shape[d] % axis_size == 0]
    if not candidates:
        return PartitionSpec()
    spec = [None] * len(shape)
    spec[int(candidates[0])] = "fsdp"
    return PartitionSpec(*spec)


def _explicit_spec(name, shape, rule, mesh) -> PartitionSpec:
    entries = tuple(rule)
    if len(entries) != len(shape):
        raise ConfigError(
            f"sharding rule {rule!r} for {name} has {len(entries)} entries, "
            f"but the array has shape {tuple(shape)}"
        )
    for size, axes in zip(shape, entries):
        axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        for axis in axes:
            if axis not in mesh.shape:
                raise ConfigError(f"sharding rule {rule!r} for {name}: no mesh axis {axis!r}")
        split = math.prod(mesh.shape[a] for a in axes)
        if size % split:
            raise ConfigError(
                f"sharding rule {rule!r} cannot shard {name} of shape {tuple(shape)}: "
                f"dimension {size} does not divide over {split} devices of {axes}"
            )
    return PartitionSpec(*[tuple(e) if isinstance(e, list) else e for e in entries])


def leaf_spec(name: str, shape, rules, mesh, fsdp: bool, fsdp_min_size: int) -> PartitionSpec:
    """The PartitionSpec of the leaf `name` of `shape` under `rules` (see module docstring)."""
    fsdp_size = mesh.shape.get("fsdp", 1)
    for pattern, rule in rules:
        if re.search(pattern, name):
            if rule == "replicate":
                return PartitionSpec()
            if rule == "fsdp":
                return fsdp_spec(tuple(shape), fsdp_size, fsdp_min_size)
            if isinstance(rule, (tuple, list)):
                return _explicit_spec(name, shape, rule, mesh)
            raise ConfigError(
                f"sharding rule {rule!r} for {pattern!r}: use 'replicate', 'fsdp' or a "
                "PartitionSpec tuple"
            )
    if fsdp:
        return fsdp_spec(tuple(shape), fsdp_size, fsdp_min_size)
    return PartitionSpec()


def tree_shardings(abstract_tree, mesh, sharding_config) -> object:
    """NamedShardings for every leaf of `abstract_tree` under `config.sharding`."""
    rules = [tuple(pair) for pair in sharding_config.get("rules", ())]
    for pair in rules:
        if len(pair) != 2:
            raise ConfigError(f"sharding rule {pair!r}: expected a (regex, rule) pair")
    fsdp = bool(sharding_config.get("fsdp", False))
    min_size = int(sharding_config.get("fsdp_min_size", 2**14))

    def one(path, leaf):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        spec = leaf_spec(name, leaf.shape, rules, mesh, fsdp, min_size)
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(one, abstract_tree)

"""Device mesh and shardings: jit with NamedSharding over a Mesh is the only parallel path."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from mmjax.config_utils import ConfigError

BATCH_AXES = ("data",)


def make_mesh(mesh_config, devices=None) -> jax.sharding.Mesh:
    """A mesh with the axes of `mesh_config` (name -> size, one size may be -1 = the rest).

    Raises ConfigError naming the sizes when they do not multiply to the device count.
    """
    devices = jax.devices() if devices is None else devices
    names = list(mesh_config.keys())
    sizes = [int(mesh_config[n]) for n in names]
    if sizes.count(-1) > 1:
        raise ConfigError(f"mesh {dict(zip(names, sizes))}: at most one axis may be -1")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if known == 0 or len(devices) % known:
            raise ConfigError(
                f"mesh {dict(zip(names, sizes))} does not divide {len(devices)} devices"
            )
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ConfigError(
            f"mesh {dict(zip(names, sizes))} needs {int(np.prod(sizes))} devices, "
            f"but {len(devices)} are available"
        )
    return jax.make_mesh(
        tuple(sizes), tuple(names), axis_types=(AxisType.Auto,) * len(names), devices=devices
    )


def data_parallel_size(mesh: jax.sharding.Mesh) -> int:
    """Number of shards the batch dimension is split into."""
    return int(np.prod([mesh.shape[a] for a in BATCH_AXES if a in mesh.shape]))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (batch) dimension split over the data axes, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(tuple(a for a in BATCH_AXES if a in mesh.shape)))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Fully replicated sharding."""
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: dict, mesh: jax.sharding.Mesh) -> dict:
    """Assembles each process's local NumPy batch into global arrays sharded on the batch axis."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )

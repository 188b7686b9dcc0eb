"""Memory per device of the parameters and optimizer state, data parallel vs FSDP.

Builds the abstract train state of a config (no arrays are allocated) on a mesh of N fake CPU
devices and prints one JSON line with the bytes on the most loaded device under each layout,
read from the arrays' shardings.

  python -m experiments.probes.sharding_memory [--config=configs/vqa_transformer.py] [--devices=8]
"""

import os
import sys

_DEVICES = next((a.split("=")[1] for a in sys.argv if a.startswith("--devices=")), "8")
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={_DEVICES}"

import functools  # noqa: E402
import json  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mmjax.config_loader import load_config  # noqa: E402
from mmjax.experiment import Experiment  # noqa: E402
from mmjax.train import sharding  # noqa: E402
from mmjax.train.optimizer import make_optimizer  # noqa: E402
from mmjax.train.steps import init_train_state, state_bytes  # noqa: E402


def main():
    """Prints {"layout": MiB per device, ...} for the config's model."""
    spec = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), None)
    config = load_config(spec or "configs/vqa_transformer.py", [])
    experiment = Experiment.assemble(config)
    batch = experiment.local_batch(config.batch_size)
    optimizer = make_optimizer(config.optim, config.total_steps)
    init = functools.partial(init_train_state, experiment.task, optimizer)
    abstract = jax.eval_shape(init, jax.random.key_data(jax.random.key(0)), batch)
    n = len(jax.devices())
    layouts = {
        "data_parallel": ({"data": n, "fsdp": 1}, {"fsdp": False}),
        "fsdp": ({"data": 1, "fsdp": n}, {"fsdp": True, "fsdp_min_size": 2**14}),
        "fsdp_min_size_0": ({"data": 1, "fsdp": n}, {"fsdp": True, "fsdp_min_size": 0}),
    }
    result = {"config": spec or "configs/vqa_transformer.py", "devices": n}
    for name, (mesh_config, sharding_config) in layouts.items():
        mesh = sharding.make_mesh(mesh_config)
        shardings = sharding.tree_shardings(abstract, mesh, sharding_config)
        placed = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
        )
        per_device, total = state_bytes(placed)
        result[f"{name}_mib_per_device"] = round(per_device / 2**20, 3)
        result["total_mib"] = round(total / 2**20, 3)
    result["parameters"] = int(sum(np.prod(p.shape) for p in jax.tree.leaves(abstract.params)))
    print(json.dumps(result))


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the flags are read by hand: say them
        print(__doc__)
        sys.exit(0)
    main()

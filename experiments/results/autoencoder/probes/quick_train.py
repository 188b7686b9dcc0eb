"""A quick training probe of the autoencoder on 2,048 training scenes, without evaluations.

  python experiments/results/autoencoder/probes/quick_train.py STEPS CONFIG_ARGS [KEY=VALUE ...]

Trains configs/autoencoder.py:CONFIG_ARGS (with the KEY=VALUE overrides) for STEPS steps on
random batches of the first 2,048 training scenes and prints, every 50 steps, the mean training
image MSE and text cross-entropy of those 50 steps and the seconds per step so far.
"""

import os
import sys
import time

import jax
import numpy as np

from mmjax.config_loader import load_config
from mmjax.experiment import Experiment
from mmjax.train.optimizer import learning_rate_schedule, make_optimizer
from mmjax.train.steps import init_train_state, make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main(steps: int, arg: str, overrides: list[str]) -> None:
    """Trains and prints (module docstring)."""
    config = load_config(os.path.join(ROOT, "configs", f"autoencoder.py:{arg}"), overrides)
    config.total_steps = steps
    task = Experiment.assemble(config).task
    source = task.dataset.source("train")
    count = 2048
    examples = [task.preprocess(source[i]) for i in range(count)]
    data = {k: np.stack([e[k] for e in examples]) for k in ("image", "text")}
    size = config.batch_size
    optimizer = make_optimizer(config.optim, steps)
    first = {k: v[:size] for k, v in data.items()}
    state = jax.jit(lambda rng: init_train_state(task, optimizer, rng, first))(
        jax.random.key_data(jax.random.key(0))
    )
    step = jax.jit(make_train_step(task, optimizer, learning_rate_schedule(config.optim, steps)))
    rng = np.random.default_rng(0)
    history = {"image_mse": [], "text_ce": []}
    start = time.time()
    for s in range(1, steps + 1):
        index = rng.integers(0, count, size)
        state, metrics = step(state, {k: v[index] for k, v in data.items()})
        for key, values in history.items():
            values.append(float(metrics[key]))
        if s % 50 == 0:
            means = {k: round(float(np.mean(v[-50:])), 4) for k, v in history.items()}
            print(s, means, f"{(time.time() - start) / s:.3f}s/step", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3:])

r"""Train and evaluate an experiment: the absl entry point.

  python -m mmjax.main --config=configs/vqa_transformer.py[:arg] --workdir=runs/vqa \
      [--config.optim.lr=3e-4 ...]

Loads and checks the config (a mistake stops here with one line naming it), initialises
jax.distributed only when several processes are configured, builds the dataset if needed,
then trains (resuming from the workdir's latest checkpoint) and evaluates.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from absl import app, flags

from mmjax.config_utils import ConfigError
from mmjax.data.errors import DataError

flags.DEFINE_string("config", None, "Config file, optionally followed by :key=value,...")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.")
flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for a run over several processes."
)
flags.DEFINE_integer("num_processes", None, "Number of processes (hosts) of the run.")
flags.DEFINE_integer("process_id", None, "Index of this process, 0 .. num_processes - 1.")
FLAGS = flags.FLAGS

_OVERRIDES: list[str] = []


def _split_overrides(argv: list[str]) -> list[str]:
    """Removes the --config.<key>=<value> arguments from argv into _OVERRIDES."""
    rest = []
    for arg in argv:
        if arg.startswith("--config."):
            _OVERRIDES.append(arg[len("--config.") :])
        else:
            rest.append(arg)
    return FLAGS(rest)


def _multi_process_configured() -> bool:
    """Whether the flags or a cluster environment ask for several JAX processes."""
    if (FLAGS.num_processes or 1) > 1:
        return True
    for var in ("JAX_NUM_PROCESSES", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if int(os.environ.get(var, "1")) > 1:
            return True
    return bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))


def run(config, workdir: str) -> dict[str, float]:
    """Trains and evaluates `config` in `workdir`; returns the final eval metrics.

    Everything is checked (the config against the workdir's checkpoints, the batch sizes, the
    model's shapes on a real example, what the evaluators, writer and checkpoints need) before
    the workdir's first file is written.
    """
    import jax

    from mmjax import setup_check
    from mmjax.experiment import Experiment
    from mmjax.train.trainer import check_batch_sizes, make_mesh, train_and_evaluate
    from mmjax.workdir import Workdir

    workdir = Workdir(workdir, writer=jax.process_index() == 0)
    setup_check.check_setup(config, workdir.path)  # packages, Java, a writable workdir
    # One run per workdir: a second one stops here naming the first (Workdir.lock).
    with workdir.lock():
        workdir.check_resumable(config)
        # The batch sizes against the devices before the dataset is built: a run that cannot
        # start leaves nothing behind.
        check_batch_sizes(config, make_mesh(config))
        resuming = bool(workdir.checkpoint_steps())
        experiment = Experiment.assemble(config, saved=workdir if resuming else None)
        experiment.check_model()
        setup_check.check_experiment(config, experiment, workdir.path)  # a batch, disk
        workdir.write_config(config)
        experiment.save_vocabularies(workdir)
        experiment.save_init_record(workdir)  # a run started from weights says from which
        metrics = train_and_evaluate(config, workdir, experiment.task)
    report = experiment.task.report(metrics)
    if jax.process_index() == 0 and report:
        print(report, flush=True)
    return metrics


def _report_evaluation_error(error, workdir: str) -> None:
    """One line naming the evaluator, the error and the saved step; the traceback to a file."""
    import jax

    from mmjax.train.evaluation_error import ERRORS_LOG

    log = os.path.join(workdir, ERRORS_LOG)
    if jax.process_index() == 0:  # only process 0 writes the workdir's files
        error.write_log(workdir)
    print(
        f"mmjax: evaluation error: {error}; step {error.step} is saved and the same command "
        f"resumes from it; traceback in {log}",
        file=sys.stderr,
        flush=True,
    )


def main(argv):
    """Entry point: checks flags and config, then runs."""
    del argv
    from mmjax.config_loader import load_config, validate_config
    from mmjax.setup_check import SetupError
    from mmjax.train.checkpoints import CheckpointError, quiet_failed_save_reports
    from mmjax.train.evaluation_error import EvaluationError
    from mmjax.workdir import WorkdirError

    try:
        if not FLAGS.config or not FLAGS.workdir:
            raise ConfigError("both --config and --workdir are required")
        config = load_config(FLAGS.config, _OVERRIDES)
        validate_config(config)
        if _multi_process_configured():
            import jax

            # Without flags, JAX reads the cluster's own variables (SLURM, Open MPI, TPU pods).
            jax.distributed.initialize(
                coordinator_address=FLAGS.coordinator_address,
                num_processes=FLAGS.num_processes,
                process_id=FLAGS.process_id,
            )
        logging.getLogger().setLevel(logging.INFO)
        # orbax and TFDS log every save and dataset lookup through absl at INFO/WARNING.
        logging.getLogger("absl").setLevel(logging.ERROR)
        quiet_failed_save_reports()  # a failed save is the one line printed below
        # orbax needs absolute paths; a relative --workdir is relative to the current directory.
        run(config, os.path.abspath(os.path.expanduser(FLAGS.workdir)))
    except ConfigError as error:
        print(f"mmjax: config error: {error}", file=sys.stderr)
        sys.exit(2)
    except DataError as error:
        print(f"mmjax: data error: {error}", file=sys.stderr)
        sys.exit(2)
    except SetupError as error:
        print(f"mmjax: setup error: {error}", file=sys.stderr)
        sys.exit(2)
    except WorkdirError as error:  # in use by another run, or a file it did not write
        print(f"mmjax: workdir error: {error}", file=sys.stderr)
        sys.exit(2)
    except EvaluationError as error:
        _report_evaluation_error(error, os.path.abspath(os.path.expanduser(FLAGS.workdir)))
        sys.exit(1)
    except FloatingPointError as error:
        print(f"mmjax: training stopped: {error}", file=sys.stderr)
        sys.exit(1)
    except CheckpointError as error:
        print(f"mmjax: checkpoint error: {error}", file=sys.stderr, flush=True)
        # Skips interpreter teardown: TensorStore callbacks of the failed reads would print
        # "Event loop is closed" tracebacks after this line. Nothing is left to write.
        os._exit(1)
    print(json.dumps({"workdir": FLAGS.workdir, "status": "done"}))


if __name__ == "__main__":
    app.run(main, flags_parser=_split_overrides)

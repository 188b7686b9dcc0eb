r"""Runs a config's hyperparameter sweep: each trial is its own `python -m mmjax.main` process.

  python -m experiments.sweep --config=configs/vqa_transformer.py:size=small \
      --workdir=runs/sweep --parallel=2 [--sweep_arg=...] \
      [--metric=validation/accuracy --mode=max] [--config.a.b=value ...] [--dry_run] \
      [--launcher=slurm] [--report]

The trials are what the config file's `get_sweep(arg)` returns (see mmjax/sweeps.py); each runs
in `workdir/<trial name>` with its stdout and stderr in `log.txt` there, `--parallel` at a time,
under a one-line progress display. `--config.a.b=value` flags go to every trial.

Stopping and resuming: Ctrl-C or SIGTERM sends SIGTERM to the running trials (mmjax.main saves a
checkpoint and exits), waits for them (`--stop_timeout`; a second Ctrl-C kills them at once)
and records them as interrupted. A trial is finished only when its process exited 0 without
having been stopped; that is recorded in `workdir/<trial>/sweep_status.json` (written
atomically). Running the same command again skips finished trials and starts the others again,
which resume from their checkpoints by themselves; failed trials are retried too, unless
`--skip_failed`.

At the end (also after a stop) the sweep writes `workdir/results.csv` (one row per trial: name,
status, exit code, final eval metrics from the trial's last metrics.jsonl record that holds
any, wall time, overrides, the last line of a failed trial's stderr), `workdir/results.md`
(best first by `--metric`) and `workdir/results.png` (the metric against each swept value).
The default metric is validation/accuracy: design choices are made on the validation split,
whose evaluator runs during training; the test evaluation (run at the end) is in the results
too, but choosing by it would tune the sweep to the test set.
`--report` only rewrites these from what the workdir holds (e.g. after a Slurm array ran).

`--dry_run` prints the commands; `--launcher=slurm` writes `workdir/sweep.sbatch`, an array job
with one index per trial, instead of running anything here.

Exit status: 0 when every trial finished, 1 when some failed or did not run, 2 for a mistake in
the flags or the sweep, 128 + the signal's number when stopped by a signal.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import fcntl
import io
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque

from mmjax import sweeps
from mmjax.config_utils import ConfigError
from mmjax.workdir import METRICS, read_metrics

STATUS_FILE = "sweep_status.json"
LOG_FILE = "log.txt"
# What runs a trial unless --trial_command says otherwise; `python` on a cluster (the script
# sets PYTHON), this interpreter here.
MAIN_MODULE = ["-m", "mmjax.main"]
_TAIL_BYTES = 16384  # of each trial's stderr, kept for the error lines of a failed trial


# ----------------------------------------------------------------------------------------------
# Flags.


def parse_flags(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(flags, common overrides): the --config.a.b=value arguments are for every trial."""
    command: list[str] = []
    if "--" in argv:  # --run_trial=DIR -- COMMAND...
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    common = [a[len("--config.") :] for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    parser = argparse.ArgumentParser(
        prog="python -m experiments.sweep",
        description="Runs the trials of a config file's get_sweep(arg).",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--config", help="config file with get_sweep, optionally followed by :key=value,...")
    add("--workdir", help="sweep directory; each trial runs in workdir/<trial name>")
    add("--parallel", type=int, default=1, help="trials run at once (default 1)")
    add("--sweep_arg", default=None, help="the argument passed to get_sweep(arg)")
    add(
        "--metric",
        default="validation/accuracy",
        help="metric that ranks the trials (default validation/accuracy: choose on validation "
        "data, keep the test split for the final numbers)",
    )
    add("--mode", choices=("max", "min"), default="max", help="whether higher --metric is better")
    add("--dry_run", action="store_true", help="print the commands, run nothing")
    add("--launcher", choices=("local", "slurm"), default="local", help="local, or a Slurm script")
    add("--report", action="store_true", help="only rewrite results.csv/.md/.png from the workdir")
    add("--skip_failed", action="store_true", help="do not retry trials recorded as failed")
    add("--stop_timeout", type=float, default=300.0, help="seconds stopped trials get to save")
    add(
        "--devices_per_trial",
        type=int,
        default=0,
        help="GPUs per trial: gives each running trial its own CUDA_VISIBLE_DEVICES (0: leave it)",
    )
    add("--skip_data_prep", action="store_true", help="do not build missing datasets up front")
    add(
        "--trial_command",
        default=None,
        help="replaces 'python -m mmjax.main' before the trial's flags (tests, wrappers)",
    )
    add("--run_trial", default=None, help=argparse.SUPPRESS)  # one trial, from sweep.sbatch
    flags = parser.parse_args(rest)
    flags.command = command
    if flags.run_trial is None:
        if not flags.config or not flags.workdir:
            parser.error("both --config and --workdir are required")
        if flags.parallel < 1:
            parser.error(f"--parallel={flags.parallel} must be at least 1")
    elif not command:
        parser.error("--run_trial=DIR needs the trial's command after --")
    return flags, common


# ----------------------------------------------------------------------------------------------
# Trial state on disk.


def read_status(trial_dir: str) -> dict:
    """The trial's recorded status ({} when it never started)."""
    try:
        with open(os.path.join(trial_dir, STATUS_FILE)) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def write_status(trial_dir: str, status: dict) -> None:
    """Writes the status file atomically: a reader sees the old one or the new one, whole."""
    path = os.path.join(trial_dir, STATUS_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(status, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def final_metrics(trial_dir: str) -> dict:
    """The last metrics.jsonl record holding eval metrics (keys other than step and train/*)."""
    try:
        records = read_metrics(os.path.join(trial_dir, METRICS))  # leaves out a cut last line
    except FileNotFoundError:
        return {}
    for record in reversed(records):
        if any(k != "step" and not k.startswith("train/") for k in record):
            return {k: v for k, v in record.items() if not k.startswith("train/")}
    return {}


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# ----------------------------------------------------------------------------------------------
# Running trials as child processes.


@dataclasses.dataclass
class Job:
    """One trial to run: its name, directory, command and overrides (for the status file)."""

    name: str
    directory: str
    command: list[str]
    overrides: str = ""


@dataclasses.dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    started: float
    log: io.BufferedWriter
    lock: io.TextIOWrapper
    slot: int
    status: dict
    tail: bytearray = dataclasses.field(default_factory=bytearray)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: the trial gets SIGTERM (and saves a checkpoint) if the runner dies, even by
    # SIGKILL, instead of running on unseen while a restarted sweep starts it again.
    if sys.platform.startswith("linux"):
        _LIBC.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


if sys.platform.startswith("linux"):
    import ctypes

    _LIBC = ctypes.CDLL(None)  # loaded before any fork: the child only calls it


def _lock(trial_dir: str):
    """An exclusive lock on the trial's directory, or None while another process holds it."""
    handle = open(os.path.join(trial_dir, ".lock"), "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def last_lines(data: bytes, n: int = 1) -> list[str]:
    """The last `n` non-empty lines of `data` (a progress bar's carriage return ends one too)."""
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    return [line.strip() for line in text.split("\n") if line.strip()][-n:]


class Runner:
    """Runs jobs as child processes, `parallel` at a time, with a progress line.

    Each job's stdout goes straight to its log.txt; its stderr comes through a pipe that is
    copied there too and whose tail names the error of a failed trial.
    """

    def __init__(
        self,
        jobs: list[Job],
        parallel: int = 1,
        stop_timeout: float = 300.0,
        devices_per_trial: int = 0,
        skip_failed: bool = False,
        out=None,
        progress: bool = True,
    ):
        self.jobs = jobs
        self.parallel = parallel
        self.stop_timeout = stop_timeout
        self.devices_per_trial = devices_per_trial
        self.skip_failed = skip_failed
        self.out = out or sys.stdout
        self.progress = progress
        self.tty = progress and self.out.isatty()
        self.counts = dict(done=0, failed=0, interrupted=0, busy=0)
        self.durations: list[float] = []
        self.signal: int | None = None
        self.kill = False
        self.running: list[_Running] = []
        self._shown = ""

    # -- signals

    def _on_signal(self, signum, frame):
        if self.signal is not None:
            self.kill = True  # a second Ctrl-C: do not wait for the checkpoints
        self.signal = signum

    # -- output

    def _print(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        self.out.write(text + "\n")
        self._shown = ""
        self._show()

    def _line(self) -> str:
        c = self.counts
        pending = len(self.pending)
        elapsed = time.monotonic() - self.start
        eta = None
        if self.durations:
            # The mean trial so far, for each pending one and the rest of each running one.
            mean = sum(self.durations) / len(self.durations)
            now = time.monotonic()
            work = pending * mean + sum(max(mean - (now - r.started), 0) for r in self.running)
            eta = work / self.parallel
        elif not pending and not self.running:
            eta = 0.0
        busy = f", {c['busy']} running elsewhere" if c["busy"] else ""
        return (
            f"sweep: {c['done']}/{len(self.jobs)} done, {len(self.running)} running, "
            f"{c['failed']} failed, {pending} pending{busy} | elapsed {_duration(elapsed)}, "
            f"ETA {_duration(eta)}"
        )

    def _show(self) -> None:
        if not self.progress:
            return
        line = self._line()
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            self.out.write("\r\033[K" + line[:width])
            self.out.flush()
        elif line.split(" | ")[0] != self._shown.split(" | ")[0]:
            # Not a terminal (a log file): a new line only when the counts change.
            self.out.write(line + "\n")
            self.out.flush()
        self._shown = line

    # -- children

    def _start(self, job: Job, slot: int) -> None:
        os.makedirs(job.directory, exist_ok=True)
        lock = _lock(job.directory)
        if lock is None:
            self.counts["busy"] += 1
            self._print(f"[sweep] {job.name}: running in another process, skipped")
            return
        previous = read_status(job.directory)
        status = dict(
            name=job.name,
            overrides=job.overrides,
            command=shlex.join(job.command),
            status="running",
            attempts=previous.get("attempts", 0) + 1,
            wall_time_s=previous.get("wall_time_s", 0.0),
            started_at=_now(),
            host=socket.gethostname(),
        )
        log = open(os.path.join(job.directory, LOG_FILE), "ab")
        log.write(f"\n=== sweep attempt {status['attempts']} at {status['started_at']}: ".encode())
        log.write(f"{status['command']}\n".encode())
        log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # so the log is in the order written
        if self.devices_per_trial:
            first = slot * self.devices_per_trial
            devices = range(first, first + self.devices_per_trial)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
        write_status(job.directory, status)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                job.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.PIPE,
                env=env,
                # Its own session: a terminal's Ctrl-C reaches only the runner, which then
                # stops each trial itself and knows that it did.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as error:  # no such program, not executable
            log.write(f"{error}\n".encode())
            log.close()
            self._record(job, status, 127, str(error).encode(), started, lock, stopped=False)
            return
        os.set_blocking(proc.stderr.fileno(), False)
        self.running.append(_Running(job, proc, started, log, lock, slot, status))
        self._print(f"[sweep] {job.name}: started (attempt {status['attempts']})")

    def _drain(self, run: _Running) -> None:
        """Copies what the child wrote to stderr so far into its log and tail."""
        while True:
            try:
                data = os.read(run.proc.stderr.fileno(), 65536)
            except BlockingIOError:
                return
            if not data:
                return
            run.log.write(data)
            run.log.flush()
            run.tail += data
            del run.tail[:-_TAIL_BYTES]

    def _finish(self, run: _Running, stopped: bool) -> None:
        self._drain(run)
        run.proc.stderr.close()
        run.log.close()
        self.running.remove(run)
        code = run.proc.returncode
        self._record(run.job, run.status, code, bytes(run.tail), run.started, run.lock, stopped)

    def _record(self, job, status, code, tail, started, lock, stopped) -> None:
        seconds = time.monotonic() - started
        if stopped:
            # Even an exit 0: mmjax.main exits 0 after saving on SIGTERM, mid-training.
            state = "interrupted"
        else:
            state = "done" if code == 0 else "failed"
            self.durations.append(seconds)
        lines = last_lines(tail, 10) if state != "done" else []
        status.update(
            status=state,
            returncode=code,
            error=lines[-1] if lines else "",
            error_tail=lines,
            wall_time_s=round(status["wall_time_s"] + seconds, 3),
            ended_at=_now(),
        )
        write_status(job.directory, status)
        lock.close()
        self.counts[state] += 1
        what = {"done": "done", "failed": f"failed (exit {code})", "interrupted": "interrupted"}
        note = f": {status['error']}" if state == "failed" and status["error"] else ""
        self._print(f"[sweep] {job.name}: {what[state]} after {_duration(seconds)}{note}")

    def _stop_all(self) -> None:
        """SIGTERM to every running trial; waits for them to save, SIGKILL after the timeout."""
        name = signal.Signals(self.signal).name
        self._print(
            f"[sweep] {name}: stopping {len(self.running)} running trials (they save a "
            f"checkpoint; up to {self.stop_timeout:.0f} s, Ctrl-C again to kill them)"
        )
        for run in self.running:
            try:
                run.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_timeout
        while self.running:
            if self.kill or time.monotonic() > deadline:
                for run in self.running:
                    try:  # the whole session: also the trial's own worker processes
                        os.killpg(run.proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            for run in list(self.running):
                self._drain(run)
                if run.proc.poll() is not None:
                    self._finish(run, stopped=True)
            time.sleep(0.05)

    def run(self) -> int:
        """Runs the jobs; 0 when all are done, 1 when some failed, 128 + signal when stopped."""
        self.start = time.monotonic()
        self.pending = deque()
        for job in self.jobs:
            state = read_status(job.directory).get("status")
            if state == "done" or (state == "failed" and self.skip_failed):
                self.counts[state] += 1
            else:
                self.pending.append(job)
        if self.counts["done"]:
            self._print(f"[sweep] skipping {self.counts['done']} trial(s) already done")
        if self.counts["failed"]:
            self._print(
                f"[sweep] not retrying {self.counts['failed']} failed trial(s) (--skip_failed)"
            )
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self.pending or self.running:
                if self.signal is not None:
                    self._stop_all()
                    break
                free = sorted(set(range(self.parallel)) - {r.slot for r in self.running})
                while self.pending and free:
                    self._start(self.pending.popleft(), free.pop(0))
                    free = sorted(set(range(self.parallel)) - {r.slot for r in self.running})
                for run in list(self.running):
                    self._drain(run)
                    if run.proc.poll() is not None:
                        self._finish(run, stopped=False)
                self._show()
                time.sleep(0.1)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.tty:
            self._show()
            self.out.write("\n")
        if self.signal is not None:
            return 128 + self.signal
        return 0 if self.counts["done"] == len(self.jobs) else 1


# ----------------------------------------------------------------------------------------------
# Results.


def collect(jobs: list[Job], metric: str, mode: str) -> list[dict]:
    """One row per trial, best first.

    Finished trials come first, ranked by `metric`; then the others that have it (a failed or
    stopped trial's last evaluation); then those without it, in sweep order.
    """
    rows = []
    for index, job in enumerate(jobs):
        status = read_status(job.directory)
        metrics = final_metrics(job.directory)
        step = metrics.pop("step", None)
        state = status.get("status", "pending")
        row = dict(
            name=job.name,
            status=state,
            exit_code=status.get("returncode", ""),
            wall_time_s=status.get("wall_time_s", ""),
            step=step if step is not None else "",
            overrides=job.overrides,
            error=status.get("error", "") if state != "done" else "",
            metrics=metrics,
            index=index,
        )
        rows.append(row)

    def rank(row):
        value = row["metrics"].get(metric)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return (2, 0.0, row["index"])
        order = -value if mode == "max" else value
        return (0 if row["status"] == "done" else 1, order, row["index"])

    return sorted(rows, key=rank)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_csv(path: str, rows: list[dict], trials: list[sweeps.Trial], metric: str) -> None:
    """Writes results.csv, one row per trial in the order of `rows` (best first).

    Columns: name, status, exit code, the metric, wall time, final step, overrides, each swept
    key's value, every other final eval metric, and a failed trial's last stderr line.
    """
    keys = sweeps.swept_keys(trials)
    by_name = {t.name: dict(t.overrides) for t in trials}
    names = sorted({k for r in rows for k in r["metrics"]} - {metric})
    header = ["name", "status", "exit_code", metric, "wall_time_s", "step", "overrides"]
    header += keys + names + ["error"]
    with open(path + ".tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            swept = [by_name[row["name"]].get(k, "") for k in keys]
            writer.writerow(
                [row["name"], row["status"], row["exit_code"], row["metrics"].get(metric, "")]
                + [row["wall_time_s"], row["step"], row["overrides"]]
                + swept
                + [row["metrics"].get(k, "") for k in names]
                + [row["error"]]
            )
    os.replace(path + ".tmp", path)


def _bookkeeping(key: str) -> bool:
    """Whether a metric only counts examples or seconds (not worth a column in the table)."""
    return key.rsplit("/", 1)[-1] in ("count", "seconds")


def markdown(rows: list[dict], metric: str, mode: str, title: str) -> str:
    """The text of results.md: a markdown table of `rows` (best first by `metric`).

    Next to `metric` it shows the other headline metrics of the same evaluator (e.g.
    validation/f1 next to validation/accuracy), then the step, wall time and a failed trial's
    error.
    """
    prefix = metric.split("/")[0] + "/"
    extra = sorted(
        {
            k
            for r in rows
            for k in r["metrics"]
            if k.startswith(prefix) and k.count("/") == 1 and k != metric and not _bookkeeping(k)
        }
    )[:5]
    columns = [metric, *extra]
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    lines = [
        f"# {title}",
        "",
        f"{len(rows)} trials: {summary}. Best first by {metric} ({mode}).",
        "",
        "| # | trial | status | " + " | ".join(columns) + " | step | wall time | note |",
        "| --- " * (len(columns) + 6) + "|",
    ]
    for i, row in enumerate(rows, 1):
        note = row["error"] or (f"exit {row['exit_code']}" if row["status"] == "failed" else "")
        note = note.replace("|", "\\|")[:160]
        values = [_fmt(row["metrics"].get(c, "")) for c in columns]
        wall = row["wall_time_s"]
        wall = _duration(wall) if isinstance(wall, int | float) else ""
        cells = [str(i), f"`{row['name']}`", row["status"], *values, str(row["step"]), wall, note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(workdir, jobs, trials, metric, mode, title, out) -> None:
    """Writes results.csv, results.md and results.png (when matplotlib is there) in workdir."""
    os.makedirs(workdir, exist_ok=True)
    rows = collect(jobs, metric, mode)
    write_csv(os.path.join(workdir, "results.csv"), rows, trials, metric)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(markdown(rows, metric, mode, title))
    from experiments import sweep_plot

    written = sweep_plot.plot(rows, trials, metric, os.path.join(workdir, "results.png"))
    plot = f", {os.path.join(workdir, 'results.png')}" if written else f" (no plot: {written.why})"
    print(f"[sweep] results: {os.path.join(workdir, 'results.md')}, results.csv{plot}", file=out)
    best = next((r for r in rows if metric in r["metrics"]), None)
    if best is not None:
        print(f"[sweep] best: {best['name']} {metric}={_fmt(best['metrics'][metric])}", file=out)


# ----------------------------------------------------------------------------------------------
# Slurm.

_SBATCH = """#!/bin/bash
# mmjax sweep: {n} trials of {config}, one Slurm array index each (at most {parallel} at once).
# Written by: {invocation}
# Submit:     sbatch {script}
# Results:    {report}
#             (after the jobs end: results.csv, results.md and results.png in the workdir)
#
# Edit the #SBATCH lines for your cluster: partition, account, GPUs, memory, time. Each trial
# resumes from its checkpoint, so a trial cut by the time limit or by preemption continues
# when this script is submitted again; trials already finished are skipped.
#SBATCH --job-name={job_name}
#SBATCH --array=0-{last}%{parallel}
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --gres=gpu:1
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --output={workdir}/slurm-%A_%a.out
# SIGTERM to the trial 2 minutes before the time limit, so that it saves a checkpoint.
#SBATCH --signal=B:TERM@120
# Uncomment and fill in where your cluster needs them:
##SBATCH --partition=gpu
##SBATCH --account=my-account
##SBATCH --requeue

set -euo pipefail
cd {cwd}
# Edit: set up the environment mmjax is installed in, e.g.
#   module load cuda
#   source .venv/bin/activate
PYTHON="${{PYTHON:-python}}"
export PYTHONPATH="{root}${{PYTHONPATH:+:$PYTHONPATH}}"

case "$SLURM_ARRAY_TASK_ID" in
{cases}
  *) echo "no trial $SLURM_ARRAY_TASK_ID in this sweep" >&2; exit 2 ;;
esac
# The wrapper writes the trial's log.txt and sweep_status.json as a local sweep does, and
# passes SIGTERM on to the trial.
exec "$PYTHON" -m experiments.sweep --run_trial="$TRIAL_DIR" -- "$@"
"""


def _words(command: list[str]) -> str:
    """The command as shell words; the default interpreter becomes the script's $PYTHON."""
    first = '"$PYTHON"' if command[0] == "python" else shlex.quote(command[0])
    return " ".join([first, *map(shlex.quote, command[1:])])


def slurm_script(jobs, flags, parallel, invocation, report) -> str:
    """The text of sweep.sbatch: an array job whose index i runs trial i through --run_trial."""
    cases = []
    for i, job in enumerate(jobs):
        cases.append(f"  {i}) TRIAL_DIR={shlex.quote(job.directory)}")
        cases.append(f"     set -- {_words(job.command)} ;;")
    return _SBATCH.format(
        n=len(jobs),
        config=flags.config,
        parallel=parallel,
        invocation=invocation,
        report=report,
        script=shlex.quote(os.path.join(flags.workdir, "sweep.sbatch")),
        job_name=f"sweep-{os.path.basename(os.path.normpath(flags.workdir))}",
        last=len(jobs) - 1,
        workdir=os.path.abspath(flags.workdir),
        cwd=shlex.quote(os.getcwd()),
        root=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        cases="\n".join(cases),
    )


# ----------------------------------------------------------------------------------------------
# The sweep.


def prepare_data(config_spec, trials, common, out) -> None:
    """Builds each distinct dataset the trials read, once, before they start.

    Trials started together would each build a missing dataset into the same data_dir, and the
    later ones fail when TFDS renames its finished build onto the first one's.
    """
    from mmjax.config_loader import load_config
    from mmjax.data.datasets import get_dataset
    from mmjax.data.errors import DataError

    seen = set()
    for trial in trials:
        try:
            spec = sweeps.with_config_args(config_spec, trial.config_args)
            config = load_config(spec, [*common, *trial.config_overrides])
            if config.data.to_json() in seen:
                continue
            seen.add(config.data.to_json())
            print(f"[sweep] preparing the dataset of {trial.name}", file=out, flush=True)
            get_dataset(config.data).prepare()
        except (ConfigError, DataError):
            continue  # the trial reports this itself, as its error, when it runs


def run_trial(trial_dir: str, command: list[str], stop_timeout: float) -> int:
    """--run_trial: runs one trial (from sweep.sbatch) as the local runner would, unless done.

    Returns the trial's exit status (128 + n for a signal n), so Slurm shows it too.
    """
    status = read_status(trial_dir)
    if status.get("status") == "done":
        print(f"[sweep] {trial_dir}: already done", flush=True)
        return 0
    name = os.path.basename(os.path.normpath(trial_dir))
    job = Job(name, trial_dir, command, status.get("overrides", ""))
    code = Runner([job], 1, stop_timeout, progress=False).run()
    if code != 1:  # done, or stopped by a signal
        return code
    returncode = int(read_status(trial_dir).get("returncode") or 1)
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str] | None = None, out=None) -> int:
    """Runs the sweep the flags describe; returns the exit status (see the module docstring)."""
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    flags, common = parse_flags(argv)
    if flags.run_trial:
        return run_trial(flags.run_trial, flags.command, flags.stop_timeout)
    try:
        trials = sweeps.load_sweep(flags.config, flags.sweep_arg)
    except ConfigError as error:
        print(f"sweep: config error: {error}", file=sys.stderr)
        return 2
    slurm = flags.launcher == "slurm"
    if flags.trial_command:
        prefix = shlex.split(flags.trial_command)
    else:
        prefix = ["python" if slurm else sys.executable, *MAIN_MODULE]
    jobs = []
    for trial in trials:
        directory = os.path.join(flags.workdir, trial.name)
        args = trial.main_args(flags.config, common)
        command = [*prefix, args[0], f"--workdir={directory}", *args[1:]]
        jobs.append(Job(trial.name, directory, command, trial.describe()))

    title = f"Sweep of {flags.config}" + (f" ({flags.sweep_arg})" if flags.sweep_arg else "")
    if flags.dry_run:
        print(f"# {len(jobs)} trials of {flags.config}; each logs to its workdir", file=out)
        for job in jobs:
            done = read_status(job.directory).get("status") == "done"
            print(shlex.join(job.command) + ("  # done: skipped" if done else ""), file=out)
        return 0
    if flags.report:
        write_results(flags.workdir, jobs, trials, flags.metric, flags.mode, title, out)
        return 0
    os.makedirs(flags.workdir, exist_ok=True)
    with open(os.path.join(flags.workdir, "sweep.json"), "w") as f:
        json.dump(
            dict(
                config=flags.config,
                sweep_arg=flags.sweep_arg,
                common_overrides=common,
                trials=[dict(name=t.name, overrides=dict(t.overrides)) for t in trials],
            ),
            f,
            indent=1,
        )
    todo = [t for t, j in zip(trials, jobs) if read_status(j.directory).get("status") != "done"]
    if todo and not flags.trial_command and not flags.skip_data_prep:
        prepare_data(flags.config, todo, common, out)
    if slurm:
        script = os.path.join(flags.workdir, "sweep.sbatch")
        invocation = shlex.join(["python", "-m", "experiments.sweep", *argv])
        report_argv = [a for a in argv if not a.startswith("--launcher")] + ["--report"]
        report = shlex.join(["python", "-m", "experiments.sweep", *report_argv])
        with open(script, "w") as f:
            f.write(slurm_script(jobs, flags, flags.parallel, invocation, report))
        os.chmod(script, 0o755)
        print(
            f"[sweep] wrote {script}: {len(jobs)} trials as a Slurm array, at most "
            f"{flags.parallel} at once. Edit its #SBATCH lines, then submit it with\n"
            f"  sbatch {shlex.quote(script)}\n"
            f"and when the jobs have ended, collect the results with\n  {report}",
            file=out,
        )
        return 0
    runner = Runner(
        jobs,
        flags.parallel,
        flags.stop_timeout,
        flags.devices_per_trial,
        flags.skip_failed,
        out=out,
    )
    code = runner.run()
    write_results(flags.workdir, jobs, trials, flags.metric, flags.mode, title, out)
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before the runner took over the signals, e.g. in get_sweep
        sys.exit(128 + signal.SIGINT)

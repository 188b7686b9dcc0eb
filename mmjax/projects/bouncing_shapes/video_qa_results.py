r"""The video QA results page's run files, question-only baseline and multi-clip evaluation.

    python -m mmjax.projects.bouncing_shapes.video_qa_results \
      --run=video=runs/video_qa --run=single_frame=runs/video_qa_single_frame \
      --run=frame_mean=runs/video_qa_frame_mean \
      --out=mmjax/projects/bouncing_shapes/results/video_qa

writes, under --out: <name>/config.json and <name>/metrics.jsonl of each run;
question_only.json (the dataset's `answer_baseline` on the runs' test split: each question
text answered with its most frequent training answer); multi_clip.json (the first run's model
on --multi_clip_clips test clips of --multi_clip_frames frames, generated like the test split's,
scored as the mean logits of its windows of the model's length, `mmjax.tasks.clip_windows`,
and, for comparison, from its first window alone); and prints the results table's rows.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import jax
import numpy as np
from absl import app, flags

flags.DEFINE_multi_string("run", [], "name=workdir of a run to report (the first: the model).")
flags.DEFINE_string("out", None, "The results folder.")
flags.DEFINE_integer("multi_clip_frames", 16, "Frames of the multi-clip test clips (0: none).")
flags.DEFINE_integer("multi_clip_clips", 200, "How many multi-clip test clips.")
flags.DEFINE_multi_string(
    "time_log", [], "name=file: the run's `/usr/bin/time -v` output, for <name>/run_time.json."
)
flags.DEFINE_string("load_log", None, "Lines '<unix time> <contents of /proc/loadavg>'.")
FLAGS = flags.FLAGS

ROWS = ("motion", "static", "overall")


def copy_run(workdir: str, folder: str) -> dict:
    """Copies a run's config.json and metrics.jsonl into `folder`; returns its last test record."""
    os.makedirs(folder, exist_ok=True)
    for name in ("config.json", "metrics.jsonl"):
        shutil.copyfile(os.path.join(workdir, name), os.path.join(folder, name))
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if '"test/accuracy"' in line]
    return records[-1]


def run_time(time_log: str, load_log: str | None) -> dict:
    """Wall, user and system seconds, peak memory of a `/usr/bin/time -v` log; and the load.

    The load: the mean and the range of the 1-minute load average over the run's wall time,
    from `load_log` (sampled every 30 s while it ran), when given.
    """
    fields = {
        "User time (seconds)": "user_s",
        "System time (seconds)": "system_s",
        "Maximum resident set size (kbytes)": "max_rss_kb",
    }
    out, ended = {}, os.path.getmtime(time_log)
    with open(time_log) as f:
        for line in f:
            name, _, value = line.strip().rpartition(": ")
            if name in fields:
                out[fields[name]] = float(value)
            elif name.startswith("Elapsed (wall clock) time"):
                parts = [float(p) for p in value.split(":")]
                out["wall_s"] = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    out["cpu_s"] = out["user_s"] + out["system_s"]
    if load_log:
        with open(load_log) as f:
            samples = [line.split() for line in f if line.strip()]
        loads = [float(x[1]) for x in samples if ended - out["wall_s"] <= float(x[0]) <= ended]
        if loads:
            out.update(load_mean=float(np.mean(loads)), load_min=min(loads), load_max=max(loads))
    return out


def _accuracy(metrics: dict, prefix: str) -> dict[str, float]:
    """{family or group or "overall": accuracy} from an evaluator's `prefix`/accuracy keys."""
    out = {"overall": metrics[f"{prefix}/accuracy"]}
    for key, value in metrics.items():
        head, _, name = key.partition(f"{prefix}/accuracy/")
        if not head and name and not name.endswith(("_low", "_high")):
            out[name] = value
    return out


def multi_clip(workdir: str, num_frames: int, num_clips: int) -> dict:
    """The run's accuracy on generated clips of `num_frames` frames, by window rule."""
    from mmjax.evaluators import build_evaluator
    from mmjax.predict.run import load_run
    from mmjax.projects.bouncing_shapes import clips
    from mmjax.projects.bouncing_shapes.dataset import common_record

    run = load_run(workdir)
    task, config = run.task, run.config
    window = int(config.data.num_frames)
    generated = clips.generate_split(
        config.data.dataset_seed, num_clips, config.evals.test.split, num_frames=num_frames
    )
    examples = [task.preprocess(common_record(c, i)) for i, c in enumerate(generated)]
    batches = [
        {k: np.stack([e[k] for e in examples[i : i + 50]]) for k in examples[0]}
        for i in range(0, len(examples), 50)
    ]
    evaluator_config = dict(config.evals.test.to_dict(), bootstrap_samples=0)
    result = {"num_frames": num_frames, "window": window, "clips": num_clips}
    for rule, settings in (("windows", dict(frames=window, stride=0)), ("first_window", None)):
        config.eval_window = settings or dict(frames=0, stride=0)
        predict = jax.jit(task.predict)
        scored = []
        for batch in batches:
            clip = batch if settings else dict(batch, image=batch["image"][:, :window])
            mask = np.ones(len(batch["image"]), bool)
            scored.append((dict(batch, _mask=mask), jax.device_get(predict(run.params, clip))))
        evaluator = build_evaluator("test", evaluator_config, task.evaluator_context)
        result[rule] = _accuracy({f"t/{k}": v for k, v in evaluator.evaluate(scored).items()}, "t")
    return result


def main(argv) -> None:
    """Writes the run files and the baselines' JSON under --out; prints the table rows."""
    del argv
    from mmjax.experiment import Experiment
    from mmjax.workdir import Workdir

    runs = dict(spec.split("=", 1) for spec in FLAGS.run)
    started, cpu = time.time(), time.process_time()
    tests = {name: copy_run(w, os.path.join(FLAGS.out, name)) for name, w in runs.items()}
    for name, log in (spec.split("=", 1) for spec in FLAGS.time_log):
        with open(os.path.join(FLAGS.out, name, "run_time.json"), "w") as f:
            json.dump(run_time(log, FLAGS.load_log), f, indent=1)
    first = next(iter(runs.values()))
    config = Workdir(first, writer=False).read_config()
    dataset = Experiment.assemble(config, prepare_data=False).dataset
    _, question_only = dataset.answer_baseline(config.evals.test.split)
    with open(os.path.join(FLAGS.out, "question_only.json"), "w") as f:
        json.dump(question_only, f, indent=1)
    columns = {name: _accuracy(record, "test") for name, record in tests.items()}
    columns["question_only"] = question_only
    if FLAGS.multi_clip_frames:
        clips = multi_clip(first, FLAGS.multi_clip_frames, FLAGS.multi_clip_clips)
        clips.update(wall_s=time.time() - started, cpu_s=time.process_time() - cpu)
        with open(os.path.join(FLAGS.out, "multi_clip.json"), "w") as f:
            json.dump(clips, f, indent=1)
    print("| family | " + " | ".join(columns) + " |")
    for row in [*(k for k in columns[next(iter(runs))] if k not in ROWS), *ROWS]:
        cells = [f"{100 * c[row]:.1f}%" if row in c else "" for c in columns.values()]
        print(f"| {row} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    flags.mark_flags_as_required(["out"])
    app.run(main)

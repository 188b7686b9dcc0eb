"""Every documented command runs after the documented install.

A fresh venv gets `pip install -e .` with no extras, as the README's first command does (so no
pycocoevalcap, no PyTorch; Java may be on the PATH, but METEOR needs both). Then every
`python -m mmjax.main --config=...` command written in README.md and docs/*.md runs in it, as
written, with `steps=2` added to its config arguments, followed by every documented
`python -m mmjax.predict` and `python -m mmjax.plot` command on the results. Each must exit 0.

What a user would do around the commands is done too, and only that:
- they run from a folder that has the checkout's `configs/` and `mmjax/` (linked), with HOME
  a fresh folder, so `~/tensorflow_datasets` starts empty and the built-in data is built;
- the catalog datasets (coco_captions, clevr), which need internet and TensorFlow to build, are
  the stand-ins of tests/test_catalog_datasets.py, written where the catalog puts them;
- `dataset=custom,data_dir=DIR` commands get DIR from the tutorial's own two commands
  (make_image_folder, with 300 images instead of 2,000, and prepare);
- the multi-host pair runs as two processes on this machine (`host0` is `localhost`), an
  absolute workdir (`/shared/runs/vqa`) is taken relative to the folder, and a command that
  would reuse a workdir of a different earlier command gets its own (`shared/runs/vqa_2`);
  identical commands run once;
- placeholders: `scene.png` is one of the tutorial's scenes, `clip.gif`, `frames/` and
  `clip.npy` one bouncing-shapes clip, `runs/a` and `runs/b` are two of
  the runs made here.
A command that needs what the plain install and this machine cannot give (a config file
written in a page, weights saved with the `[convert]` extra from the hub) is listed in NOT_RUN,
matched by a piece of its text, with the test that runs it instead. A command whose config file
is not in the repository must be listed; a NOT_RUN entry that matches no command fails.

Slow: 13 minutes on this 2-core machine when lightly loaded, 33 when shared with other jobs
(the venv and pip install took about a minute with a warm pip cache; the runs compile every
default-size model, and the beam-search ResNet captioner alone takes 3-9 minutes). Run it with
`python -m pytest -q -m slow tests/test_documented_commands.py`.
"""

import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from documented_commands import ROOT, documented_commands

from mmjax.config_loader import load_config
from mmjax.sweeps import with_config_args

STEPS = 2
NOT_RUN = {
    "--config=my_config.py": "docs/extending.md's toy project, whose files are in the page's "
    "code; tests/test_extending.py writes them and runs this command",
    ":init=clip": "docs/weights.md: a CLIP saved with transformers from the hub, read with the "
    "[convert] extra; tests/test_start_from_weights.py runs these on a tiny saved CLIP",
    "--config.init_from.path=runs/start_from_weights/": "docs/weights.md: the tower of "
    "`python -m experiments.start_from_weights`; tests/test_start_from_weights.py runs it",
    ":init=runs/image_captioner": "docs/video.md: an image captioner's workdir of the video "
    "captioner's width; tests/test_video_tasks.py starts a tiny one from a tiny image captioner",
}
PLACEHOLDERS = {"runs/a": "runs/vqa", "runs/b": "runs/tiny"}
# The tutorial's first two commands (README, "Train on your own images"), with 300 scenes.
MAKE_IMAGE_FOLDER = ["--output=my_photos", "--num_images=300"]
PREPARE = ["--input=my_photos/data.jsonl", "--images=my_photos/images"]


def _value(args: list[str], flag: str) -> str | None:
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"--{flag}=")), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A venv with `pip install -e .` and no extras; its python."""
    venv = tmp_path_factory.mktemp("fresh") / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "-e", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert install.returncode == 0, install.stderr[-5000:]
    for extra in ("pycocoevalcap", "torch", "pytest"):  # the plain install, nothing more
        found = subprocess.run([python, "-c", f"import {extra}"], capture_output=True)
        assert found.returncode != 0, f"{extra} is installed: not the plain install"
    return python


@pytest.fixture(scope="module")
def folder(tmp_path_factory, fresh_venv):
    """The user's folder: configs/ and mmjax/ of the checkout, and a fresh HOME; its env."""
    work = tmp_path_factory.mktemp("user")
    for name in ("configs", "mmjax"):
        os.symlink(os.path.join(ROOT, name), work / name)
    (work / "home").mkdir()
    bin_dir = os.path.dirname(fresh_venv)
    path = [p for p in os.environ["PATH"].split(os.pathsep) if ".venv" not in p]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(work / "home"), PATH=os.pathsep.join([bin_dir, *path]))
    env["VIRTUAL_ENV"] = os.path.dirname(bin_dir)
    return work, env


def _run(python, args, work, env, timeout=1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout
    )


def _main_jobs(commands) -> tuple[list[list[list[str]]], set[str]]:
    """The distinct main commands as jobs (one argument list per process), and NOT_RUN seen."""
    jobs, seen, workdirs, skipped = [], set(), {}, set()
    for _, args in commands:
        listed = [piece for piece in NOT_RUN if piece in " ".join(args)]
        if listed:
            skipped.update(listed)
            continue
        config = _value(args, "config")
        path = config.partition(":")[0]
        assert os.path.exists(os.path.join(ROOT, path)), f"{path!r} is not in the repository"
        args = [
            f"--config={with_config_args(config, {'steps': str(STEPS)})}"
            if a.startswith("--config=")
            else a
            for a in args
        ]
        key = tuple(a for a in args if not a.startswith(("--process_id=", "--coordinator")))
        if key in seen:
            continue
        seen.add(key)
        workdir = _value(args, "workdir").lstrip("/")
        if workdirs.setdefault(workdir, key) != key:  # another command's run is there
            workdir = f"{workdir}_{sum(w.startswith(workdir) for w in workdirs) + 1}"
            workdirs[workdir] = key
        args = [f"--workdir={workdir}" if a.startswith("--workdir=") else a for a in args]
        processes = int(_value(args, "num_processes") or 1)
        if processes == 1:
            jobs.append([args])
            continue
        address = f"--coordinator_address=localhost:{_free_port()}"
        base = [a for a in args if not a.startswith(("--process_id=", "--coordinator"))]
        jobs.append([[*base, address, f"--process_id={i}"] for i in range(processes)])
    return jobs, skipped


def _prepare_data(python, jobs, work, env) -> None:
    """What the docs have the user do first: the tutorial's folder and datasets, stand-ins."""
    done = _run(
        python,
        ["-m", "mmjax.projects.sort_of_clevr.make_image_folder", *MAKE_IMAGE_FOLDER],
        work,
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shutil.copy(work / "my_photos" / "images" / "scene_00000.png", work / "scene.png")
    _write_clips(work)
    configs = [_value(args, "config") for job in jobs for args in job]
    for config in configs:
        if "dataset=custom" in config:
            data_dir = config.split("data_dir=")[1].split(",")[0]
            if not os.path.exists(work / data_dir):
                done = _run(
                    python,
                    ["-m", "mmjax.data.prepare", *PREPARE, f"--output={data_dir}"],
                    work,
                    env,
                )
                assert done.returncode == 0, done.stderr[-3000:]
    if any("dataset=coco_captions" in c or "dataset=clevr" in c for c in configs):
        from test_catalog_datasets import ClevrStandIn, CocoCaptionsStandIn

        # The retrieval config's batch on coco_captions, read from it, so the stand-in follows it.
        spec = os.path.join(ROOT, "configs", "retrieval_dual_encoder.py:dataset=coco_captions")
        batch = load_config(spec, []).batch_size

        class CocoForDefaultBatches(CocoCaptionsStandIn, skip_registration=True):
            """The stand-in with a training split of the retrieval config's batch."""

            name = "coco_captions"  # a subclass would otherwise take its class name

            def _split_generators(self, dl_manager):
                return dict(
                    super()._split_generators(dl_manager), train=self._generate_examples(0, batch)
                )

        root = str(work / "home" / "tensorflow_datasets")
        for builder in (CocoForDefaultBatches, ClevrStandIn):
            builder(data_dir=root, file_format="array_record").download_and_prepare()


def _write_clips(work) -> None:
    """docs/video.md's `clip.gif`, `frames/` and `clip.npy`: one default bouncing-shapes clip."""
    from PIL import Image

    from mmjax.projects.bouncing_shapes import clips

    video = clips.generate_clip(clips.clip_rng(0, "test", 0))["video"]
    np.save(work / "clip.npy", video)
    (work / "frames").mkdir()
    frames = [Image.fromarray(frame) for frame in video]
    for index, frame in enumerate(frames):
        frame.save(work / "frames" / f"frame_{index:02d}.png")
    frames[0].save(work / "clip.gif", save_all=True, append_images=frames[1:], duration=100)


def _run_job(python, job, work, env) -> tuple[str, list[str]]:
    """Runs one job's processes together; (what was run, failures).

    A captioning run must also say once, in one line, that METEOR is skipped (no extra here).
    """
    start = time.time()
    processes = [
        subprocess.Popen(
            [python, "-m", "mmjax.main", *args],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in job
    ]
    failures = []
    for args, process in zip(job, processes):
        out, err = process.communicate(timeout=1800)
        if process.returncode != 0 or '"status": "done"' not in out:
            tail = "\n".join(err.strip().splitlines()[-15:])
            failures.append(f"mmjax.main {' '.join(args)}: exit {process.returncode}\n{tail}")
        skipped = [line for line in err.splitlines() if "METEOR and PTB tokenization" in line]
        if "caption_transformer" in _value(args, "config") and len(skipped) != 1:
            failures.append(f"mmjax.main {' '.join(args)}: {len(skipped)} METEOR warnings")
    shown = " ".join(job[0]) + (f" (x{len(job)} processes)" if len(job) > 1 else "")
    return f"{time.time() - start:6.0f} s  mmjax.main {shown}", failures


@pytest.mark.slow  # 13-33 minutes: a fresh venv's pip install and ~17 default-size runs
def test_every_documented_command_runs_after_the_plain_install(fresh_venv, folder):
    work, env = folder
    jobs, skipped = _main_jobs(documented_commands("mmjax.main"))
    assert skipped == set(NOT_RUN), "a NOT_RUN entry is no longer in the docs"
    assert len(jobs) >= 10
    _prepare_data(fresh_venv, jobs, work, env)
    lines, failures = [], []
    for job in jobs:
        line, failed = _run_job(fresh_venv, job, work, env)
        lines.append(line)
        failures += failed
    for program in ("mmjax.predict", "mmjax.plot"):
        commands = documented_commands(program)
        assert commands, f"no {program} command found in the docs"
        for _, args in commands:
            args = [
                f"--workdir={PLACEHOLDERS.get(w, w)}" if (w := _value([a], "workdir")) else a
                for a in args
            ]
            start = time.time()
            done = _run(fresh_venv, ["-m", program, *args], work, env, timeout=600)
            lines.append(f"{time.time() - start:6.0f} s  {program} {' '.join(args)}")
            if done.returncode != 0:
                tail = "\n".join(done.stderr.strip().splitlines()[-15:])
                failures.append(f"{program} {' '.join(args)}: exit {done.returncode}\n{tail}")
    print("\n".join(lines))
    assert not failures, "\n\n".join(failures)
    assert (work / "runs" / "vqa" / "plots" / "train.png").exists()
    assert (work / "plots" / "cmp").is_dir() and (work / "reconstruction.png").exists()

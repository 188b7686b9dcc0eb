r"""Command line: ask a trained model about one image.

  python -m mmjax.predict --workdir=runs/vqa --image=scene.png \
      --question="what is the shape of the red object?" [--attention_out=attention.png]
  python -m mmjax.predict --workdir=runs/caption --image=scene.png [--attention_out=words.png]
  python -m mmjax.predict --workdir=runs/retrieval --image=scene.png \
      --caption="a red square on the left ..." --caption="..." [--attention_out=tokens.png]
  python -m mmjax.predict --workdir=runs/autoencoder --image=scene.png \
      --output=reconstruction.png [--text="from left to right: ..."] [--figure_out=fig.png]
  python -m mmjax.predict --workdir=runs/video_qa --clip=clip.gif \
      --question="which direction does the red object move?"

A video run (model.stem="vivit") takes --clip in place of --image: a folder of PNG or JPEG
frames, a .npy array [T, H, W, 3] or an animated GIF, of the frame count and size it was
trained on (`mmjax.predict.clips`); the attention figures draw images and are not offered.

What it does follows the run's task (config.task in the workdir): VQA prints the answer and
its probability; captioning prints the caption and its log-probability; retrieval prints the
captions most similar first, each after its cosine similarity; the autoencoder prints the
text decoded from z (of the image, or of image and --text) and writes the decoded image to
--output. `--attention_out` writes the task's attention figure (`mmjax.predict.figures`) and
its raw map as .npy beside it; `--figure_out` the autoencoder's input and reconstructions
side by side with their texts. A bad input (unreadable image,
wrong size, words outside the vocabulary) stops with one line `mmjax: input error: ...`, exit 2.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

flags.DEFINE_string("workdir", None, "Workdir of a run trained by mmjax.main.")
flags.DEFINE_string("image", None, "PNG or JPEG file, of the run's image size.")
flags.DEFINE_string(
    "clip", None, "Video runs: a folder of PNG/JPEG frames, a .npy array or an animated GIF."
)
flags.DEFINE_string("question", None, "VQA: the question, in words.")
flags.DEFINE_multi_string("caption", [], "Retrieval: a candidate caption (repeat the flag).")
flags.DEFINE_integer("step", None, "Checkpoint step to load (default: the newest).")
flags.DEFINE_string(
    "attention_out",
    None,
    "VQA, captioning, retrieval: write the attention figure to this PNG and its raw map to "
    "the same name with .npy.",
)
flags.DEFINE_bool(
    "attention_per_head", False, "VQA: add a panel per fusion layer and head to --attention_out."
)
flags.DEFINE_string(
    "figure_out", None, "Autoencoder: write the input and its reconstructions, with texts."
)
flags.DEFINE_string("text", None, "Autoencoder: a caption encoded with the image (joint z).")
flags.DEFINE_string("output", None, "Autoencoder: write the reconstructed image to this PNG.")
FLAGS = flags.FLAGS


def _vqa(predictor) -> None:
    from mmjax.predict import figures
    from mmjax.predict.predictor import closest_question

    if not FLAGS.question:
        raise _input_error("a VQA run needs --question")
    answer = predictor.answer(_media(), FLAGS.question)
    print(f"{answer.text} (probability {answer.probability:.3f})", flush=True)
    known, closest = closest_question(FLAGS.question, predictor.task.dataset.known_questions())
    if not known:
        print(
            f"mmjax: note: the model was trained on the dataset's questions only; the closest "
            f"one is {closest!r}",
            file=sys.stderr,
        )
    if FLAGS.attention_out:
        drawn = figures.attention(
            predictor, _media(), question=FLAGS.question, per_head=FLAGS.attention_per_head
        )
        _write(drawn, FLAGS.attention_out)


def _write(drawn, path: str) -> None:
    """Saves a drawn figure (and its raw map) and says where, on stderr."""
    written = drawn.save(path)
    print(f"{drawn.summary} written to {' and '.join(written)}", file=sys.stderr)


def _captioning(predictor) -> None:
    caption = predictor.caption(_media())
    print(f"{caption.text} (log-probability {caption.logprob:.3f})", flush=True)
    if FLAGS.attention_out:
        from mmjax.predict import figures

        _write(figures.attention(predictor, _media()), FLAGS.attention_out)


def _retrieval(predictor) -> None:
    if not FLAGS.caption:
        raise _input_error("a retrieval run needs at least one --caption")
    for ranked in predictor.rank(_media(), FLAGS.caption):
        print(f"{ranked.similarity:+.3f}  {ranked.text}", flush=True)
    if FLAGS.attention_out:
        from mmjax.predict import figures

        _write(figures.attention(predictor, _media(), captions=FLAGS.caption), FLAGS.attention_out)


def _autoencoding(predictor) -> None:
    from mmjax.predict.images import save_image

    result = predictor.reconstruct(_media(), FLAGS.text)
    print(f"{result.text} (z {result.source.replace('_', ' ')})", flush=True)
    if FLAGS.output:
        save_image(FLAGS.output, result.image)
        print(f"reconstruction written to {FLAGS.output}", file=sys.stderr)
    if FLAGS.figure_out:
        from mmjax.predict import figures

        _write(figures.reconstructions(predictor, _media(), FLAGS.text), FLAGS.figure_out)


def _media() -> str:
    """The input file: --clip for a video run, else --image."""
    return FLAGS.clip or FLAGS.image


def _input_error(message: str):
    from mmjax.predict.errors import InputError

    return InputError(message)


COMMANDS = {
    "vqa": _vqa,
    "captioning": _captioning,
    "retrieval": _retrieval,
    "autoencoding": _autoencoding,
}
# The task-specific flags each task reads; another task's flag is a mistake, not a no-op.
TASK_FLAGS = {
    "vqa": {"question", "attention_out", "attention_per_head"},
    "captioning": {"attention_out"},
    "retrieval": {"caption", "attention_out"},
    "autoencoding": {"text", "output", "figure_out"},
}


def _check_media_flag(predictor) -> None:
    """InputError when --image / --clip does not match the run (image or video model)."""
    from mmjax.predict.errors import InputError

    if predictor.frames is None and FLAGS.clip:
        raise InputError("--clip needs a video run (model.stem='vivit'); this run takes --image")
    if predictor.frames is not None and FLAGS.image:
        raise InputError(
            f"this is a video run: give --clip (a folder of frames, a .npy array or a GIF of "
            f"{predictor.frames} frames), not --image"
        )
    for flag in ("attention_out", "figure_out"):
        if predictor.frames is not None and FLAGS[flag].value:
            raise InputError(f"--{flag} draws images; a video run has no such figure")


def main(argv) -> None:
    """Loads the workdir's run and answers for --image; one-line errors for bad inputs."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    from mmjax.config_utils import ConfigError
    from mmjax.predict.errors import InputError
    from mmjax.predict.predictor import load
    from mmjax.train.checkpoints import CheckpointError

    # orbax logs every read through absl at INFO/WARNING; the answer is what should show.
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        if not FLAGS.workdir or not (FLAGS.image or FLAGS.clip):
            raise InputError("--workdir and --image (or --clip, for a video run) are required")
        if FLAGS.image and FLAGS.clip:
            raise InputError("give --image or --clip, not both")
        predictor = load(FLAGS.workdir, FLAGS.step)
        _check_media_flag(predictor)
        command = COMMANDS.get(predictor.task_name)
        if command is None:
            raise InputError(
                f"the command line does not handle task {predictor.task_name!r}; it handles "
                f"{sorted(COMMANDS)} (use mmjax.predict.load in Python)"
            )
        given = {name for name in set().union(*TASK_FLAGS.values()) if FLAGS[name].present}
        extra = sorted(given - TASK_FLAGS[predictor.task_name])
        if extra:
            raise InputError(f"--{extra[0]} does not apply to a {predictor.task_name!r} run")
        predictor.image(_media())  # a bad file stops here, before anything compiles
        if FLAGS.attention_per_head and not FLAGS.attention_out:
            raise InputError(
                "--attention_per_head adds panels to --attention_out, which is not given"
            )
        for flag in ("attention_out", "figure_out"):
            if FLAGS[flag].value:
                from mmjax.predict.figures import check_output

                check_output(FLAGS[flag].value, flag)
        command(predictor)
    except (InputError, ConfigError) as error:
        kind = "input" if isinstance(error, InputError) else "config"
        print(f"mmjax: {kind} error: {error}", file=sys.stderr)
        sys.exit(2)
    except CheckpointError as error:
        print(f"mmjax: checkpoint error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)

r"""Convert your own images and texts into a dataset every mmjax task can train on.

  python -m mmjax.data.prepare --input=data.jsonl --images=photos/ --output=datasets/mine \
      [--validation_fraction=0.1] [--seed=0] [--tokenizer=word|sentencepiece] \
      [--vocab_size=1000] [--max_image_side=512] [--overwrite]

Each line of data.jsonl is {"image": "path", "captions": ["...", ...]} or
{"image": "path", "question": "...", "answer": "..."}, with an optional "split":
"train"|"validation" (see mmjax.data.custom). Bad lines are printed with their line numbers
and skipped; the last line says how many. Then train with, e.g.

  python -m mmjax.main --workdir=runs/mine \
      --config=configs/caption_transformer.py:dataset=custom,data_dir=datasets/mine

Exit status 0 when the dataset was written (bad lines included), 2 when nothing was written.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags

flags.DEFINE_string("input", None, "JSONL file, one image's captions or question per line.")
flags.DEFINE_string(
    "images", None, "Folder the image paths are relative to (default: the JSONL file's folder)."
)
flags.DEFINE_string("output", None, "Dataset directory to create.")
flags.DEFINE_float(
    "validation_fraction", 0.1, "Share of images without a split that go to validation."
)
flags.DEFINE_integer("seed", 0, "Seed of the train/validation division.")
flags.DEFINE_enum(
    "tokenizer", "word", ["word", "sentencepiece"], "Tokenizer to build from the training texts."
)
flags.DEFINE_integer("vocab_size", 1000, "SentencePiece vocabulary size (an upper bound).")
flags.DEFINE_string("model_type", "unigram", "SentencePiece model type (unigram, bpe, ...).")
flags.DEFINE_integer("max_image_side", 0, "Shrink larger images to this side; 0 keeps all.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output once the new one is done.")
FLAGS = flags.FLAGS


def main(argv) -> None:
    """Runs the conversion of the flags; prints bad lines to stderr, the summary to stdout."""
    del argv
    from mmjax.data.custom import convert

    logging.getLogger("absl").setLevel(logging.ERROR)  # TFDS logs every shard it writes
    if not FLAGS.input or not FLAGS.output:
        print("mmjax.data.prepare: --input and --output are required", file=sys.stderr)
        sys.exit(2)
    options = {}
    if FLAGS.tokenizer == "sentencepiece":
        options = {"vocab_size": FLAGS.vocab_size, "model_type": FLAGS.model_type}

    def report(line: str) -> None:
        stream = sys.stdout if line.startswith("wrote ") else sys.stderr
        print(f"mmjax.data.prepare: {line}", file=stream, flush=True)

    try:
        convert(
            FLAGS.input,
            FLAGS.images or os.path.dirname(os.path.abspath(FLAGS.input)),
            FLAGS.output,
            validation_fraction=FLAGS.validation_fraction,
            seed=FLAGS.seed,
            tokenizer=FLAGS.tokenizer,
            tokenizer_options=options,
            max_image_side=FLAGS.max_image_side,
            overwrite=FLAGS.overwrite,
            report=report,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"mmjax.data.prepare: {error}; nothing was written", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)

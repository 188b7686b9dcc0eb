r"""Show, convert and export weights from the command line.

  python -m mmjax.weights show PATH [--model=dual_encoder|captioner|vqa_transformer]
      what PATH holds (a save_pretrained directory, a big_vision .npz or a workdir) in mmjax's
      terms: the config.model entries the model needs, and the parameters by path with their
      shapes (those without an mmjax place listed apart)
  python -m mmjax.weights convert PATH OUT.npz
      PATH's parameters as an .npz of mmjax paths, which config.init_from reads as it is
  python -m mmjax.weights export WORKDIR OUT.npz
      a workdir's image tower (newest checkpoint) as a big_vision ViT .npz

Errors are one line, `mmjax: weights error: ...`, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from mmjax.weights import WeightsError, model_entries, sources


def _show(path: str, model: str) -> None:
    entries = model_entries(path, model)
    source = sources.read(path)
    print(f"# {source.description}")
    print(f"# config.model entries of {model} (the configs' init=PATH argument sets them):")
    for key, value in entries.items():
        print(f"model.{key} = {value!r}")
    print(f"# {len(source.params)} parameters:")
    for name in sorted(source.params):
        print(f"{name} {tuple(source.params[name].shape)}")
    if source.unused:
        print(f"# not imported (no mmjax place): {', '.join(source.unused)}")


def _convert(path: str, out: str) -> None:
    source = sources.read(path)
    tmp = out + ".tmp.npz"
    np.savez(tmp, **{k: np.asarray(v, np.float32) for k, v in source.params.items()})
    os.replace(tmp, out)
    print(f"wrote {len(source.params)} parameters of {source.description} to {out}")


def _export(workdir: str, out: str) -> None:
    from mmjax.weights import big_vision

    source = sources.read(workdir)
    with open(os.path.join(source.path, "config.json")) as f:
        class_token = json.load(f)["model"].get("class_token", "none")
    names = big_vision.save(source.params, out, class_token=class_token)
    print(f"wrote {len(names)} big_vision arrays of {source.description} to {out}")


def main(argv=None) -> int:
    """Runs one command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mmjax.weights", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="what PATH holds, in mmjax's terms")
    show.add_argument("path")
    show.add_argument(
        "--model", default="dual_encoder", choices=["dual_encoder", "captioner", "vqa_transformer"]
    )
    convert = commands.add_parser("convert", help="PATH as an .npz of mmjax paths")
    convert.add_argument("path")
    convert.add_argument("out")
    export = commands.add_parser("export", help="a workdir's image tower as big_vision .npz")
    export.add_argument("workdir")
    export.add_argument("out")
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            _show(args.path, args.model)
        elif args.command == "convert":
            _convert(args.path, args.out)
        else:
            _export(args.workdir, args.out)
    except WeightsError as error:
        print(f"mmjax: weights error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

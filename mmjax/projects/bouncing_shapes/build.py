r"""Builds the bouncing-shapes dataset from the command line and reports its size and cost.

    python -m mmjax.projects.bouncing_shapes.build --data_dir=~/tensorflow_datasets \
      [--num_train=8000 --num_validation=500 --num_test=500 --num_frames=8 --image_size=64 \
       --num_objects=4 --seed=0] [--report=build.json]

Prints (and writes to --report as JSON) the build's directory, its size on disk, the wall time,
this process's CPU time and the load average, so a time measured on a shared machine can be
read. A build that exists already is not redone (the times are then those of the check).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

from mmjax.projects.bouncing_shapes.tfds_builder import DEFAULT, SETTINGS, build_bouncing_shapes


def main(argv=None) -> dict:
    """Builds the dataset of the command line's settings; returns the report it prints."""
    parser = argparse.ArgumentParser(description="Build the bouncing_shapes dataset.")
    parser.add_argument("--data_dir", default="~/tensorflow_datasets")
    parser.add_argument("--report", default="", help="also write the report here (JSON)")
    for key in SETTINGS:
        parser.add_argument(f"--{key}", type=int, default=DEFAULT[key])
    args = vars(parser.parse_args(argv))
    data_dir, report_path = args.pop("data_dir"), args.pop("report")
    start = time.time()
    builder = build_bouncing_shapes(data_dir, **args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    directory = os.fspath(builder.data_path)
    files = [os.path.join(directory, name) for name in os.listdir(directory)]
    report = {
        "settings": args,
        "config": builder.builder_config.name,
        "size_mb": round(sum(os.path.getsize(f) for f in files if os.path.isfile(f)) / 1e6, 1),
        "wall_s": round(time.time() - start, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(report))
    if report_path:
        os.makedirs(os.path.dirname(os.path.abspath(report_path)), exist_ok=True)
        with open(report_path, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()

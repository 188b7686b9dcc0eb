"""A trained autoencoder's images decoded two ways, on the validation split: mode or expected.

  python experiments/results/autoencoder/probes/decoding.py WORKDIR [OUT.json]

For each source of z (image + text, the image alone, the text alone) the image is decoded at
its mode (each sprite at its likeliest row and column: what the evaluators score) and as the
expected image (each sprite spread over its distributions: what the training loss sees), and
both are scored on the validation scenes: mean PSNR, MSE and the share of objects drawn in
order (`drawn_scenes`). Prints one JSON object and writes it to OUT.json if given.
"""

import json
import sys

import jax
import numpy as np

from mmjax.evaluators.reconstruction import image_errors, psnr
from mmjax.models.autoencoder import MultimodalAutoencoder
from mmjax.predict.run import load_run
from mmjax.projects.sort_of_clevr.drawn_scenes import colour_centroids, order_verdicts
from mmjax.tasks.autoencoding import SOURCES


def main(workdir: str, out: str | None) -> None:
    """Scores both decodings (module docstring)."""
    run = load_run(workdir)
    task, params = run.task, run.params
    source = task.dataset.source("validation")
    examples = [task.preprocess(source[i]) for i in range(len(source))]
    batch = {k: np.stack([e[k] for e in examples]) for k in ("image", "text", "object_center")}

    @jax.jit
    def decode(params, images, text):
        zs = task._encode_all(params, images, text, "")
        out = {}
        for name in SOURCES:
            for mode in (True, False):
                image = task.model.apply(
                    {"params": params},
                    zs[name],
                    mode=mode,
                    method=MultimodalAutoencoder.decode_image,
                )
                out[(name, "mode" if mode else "expected")] = jax.numpy.clip(image, 0.0, 1.0)
        return out

    images = jax.device_get(decode(params, batch["image"], batch["text"]))
    result = {"workdir": workdir, "step": run.step, "num_examples": len(examples)}
    for (name, how), decoded in images.items():
        errors = image_errors(batch["image"], decoded)
        right = [
            order_verdicts(colour_centroids(image)[:, 0], centre[:, 0])
            for image, centre in zip(decoded, batch["object_center"])
        ]
        result[f"{name}_{how}_psnr"] = float(psnr(errors).mean())
        result[f"{name}_{how}_mse"] = float(errors.mean())
        result[f"{name}_{how}_objects_in_order"] = float(np.mean(right))
    print(json.dumps(result, indent=1))
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)

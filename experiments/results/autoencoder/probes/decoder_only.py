"""The image decoders alone, fed the scene itself as z: how fast each learns to draw.

  python experiments/results/autoencoder/probes/decoder_only.py FEATURES DECODER [STEPS]

z is made from each colour's true centre and shape (2,048 generated scenes): FEATURES
"onehot" (one-hot x and y per colour) or "sincos" (sin-cos embeddings of x and y at 16
frequencies from 1/75 to 1 radian per pixel, like the encoder's position embeddings).
DECODER "sprites" (`SpriteImageDecoder`), "sprites_straight_through" (the same, trained on
the mode's image with a straight-through gradient) or "patch" (`PatchImageDecoder`, 15-pixel
patches); Adam 2e-3, batch 32. Prints the mean training MSE of the last 50 steps every 250
steps, then the MSE of the expected and of the mode image on 4 scenes.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.models.image_decoders import PatchImageDecoder, SpriteImageDecoder
from mmjax.projects.sort_of_clevr import scenes
from mmjax.projects.sort_of_clevr.dataset import object_annotations


def scene_data(rng: np.random.Generator, count: int = 2048):
    """Images [N, 75, 75, 3] in [0, 1], centres [N, 6, 2] and shapes [N, 6] by colour."""
    images, centres, shapes = [], [], []
    for _ in range(count):
        scene = scenes.generate_scene(rng)
        annotations = object_annotations(scene["objects"], 75)
        images.append(scene["image"])
        centres.append(annotations["object_center"])
        shapes.append(annotations["object_shape"])
    return np.stack(images).astype(np.float32) / 255.0, np.stack(centres), np.stack(shapes)


def features(kind: str, centres: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """The scenes' z [N, F] (module docstring)."""
    n = len(centres)
    if kind == "onehot":
        coded = np.eye(75, dtype=np.float32)[centres].reshape(n, -1)
    else:
        omega = (1.0 / 75) ** (1.0 - np.arange(16) / 15)
        angles = centres[..., None] * omega
        coded = np.concatenate([np.sin(angles), np.cos(angles)], -1).reshape(n, -1)
    return np.concatenate([coded, shapes], -1).astype(np.float32)


def main(kind: str, decoder_kind: str, steps: int) -> None:
    """Trains the decoder and prints (module docstring)."""
    rng = np.random.default_rng(0)  # the scenes, then the batches
    images, centres, shapes = scene_data(rng)
    z = features(kind, centres, shapes)
    if decoder_kind.startswith("sprites"):
        straight = decoder_kind == "sprites_straight_through"
        decoder = SpriteImageDecoder(start=1.0, mlp_dim=128, straight_through=straight)
    else:
        decoder = PatchImageDecoder(patch_size=15, start=1.0, mlp_dim=128)
    params = decoder.init(jax.random.key(0), z[:2])
    optimizer = optax.adam(2e-3)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, z, x):
        def loss(p):
            return jnp.mean((decoder.apply(p, z) - x) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    losses = []
    for s in range(1, steps + 1):
        index = rng.integers(0, len(z), 32)
        params, opt_state, value = step(params, opt_state, z[index], images[index])
        losses.append(float(value))
        if s % 250 == 0:
            print(s, round(float(np.mean(losses[-50:])), 4), flush=True)
    expected = np.asarray(decoder.apply(params, z[:4]))
    modes = {"mode": True} if decoder_kind.startswith("sprites") else {}
    mode = np.asarray(decoder.apply(params, z[:4], **modes))
    print(
        "expected", np.mean((expected - images[:4]) ** 2), "mode", np.mean((mode - images[:4]) ** 2)
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1000)

"""The token selector "salient_patches": the patches that differ most from the mean colour."""

import jax
import jax.numpy as jnp

Array = jax.Array


def salient_patch_indices(images: Array, patch_size: int, keep: int) -> Array:
    """Indices [B, keep] (ascending) of the patches that differ most from the image's mean colour.

    A patch's score is the mean squared distance of its pixels from the mean pixel of the whole
    image; on scenes of a few objects on a plain background the kept patches are the objects'.
    images: [B, H, W, C] float; patches are p x p, row-major over the (H // p, W // p) grid.
    """
    b, h, w, c = images.shape
    p = patch_size
    x = images[:, : h // p * p, : w // p * p].astype(jnp.float32)
    deviation = jnp.square(x - x.mean(axis=(1, 2), keepdims=True)).sum(-1)
    scores = deviation.reshape(b, h // p, p, w // p, p).mean(axis=(2, 4)).reshape(b, -1)
    _, indices = jax.lax.top_k(jax.lax.stop_gradient(scores), keep)
    return jnp.sort(indices, axis=-1)

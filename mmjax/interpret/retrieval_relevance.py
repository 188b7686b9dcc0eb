"""Which image tokens a text's match with an image rests on, for a dual encoder.

With mean pooling (`image_pool="mean"`) the image embedding is e = u / |u| with
u = Dense(mean_i x_i) = mean_i Dense(x_i), x_i the image tokens after the image encoder. So the
cosine similarity with a unit text embedding t splits exactly over the tokens:

    t . e = sum_i c_i,    c_i = t . Dense(x_i) / (N |u|)

c_i ("contribution") is token i's share of the similarity, positive where the token pulls the
image towards the text and negative where it pulls it away; the shares sum to the similarity.
With attention pooling (`image_pool="map"`) the pooled vector is not linear in the tokens, and
the map is each token's own cosine similarity cos(Dense(x_i), t) ("token_similarity"), which
sums to nothing in particular.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.interpret.grid import on_grid, token_cells, token_grid
from mmjax.models.dual_encoder import DualEncoder, l2_normalize


@dataclasses.dataclass
class RetrievalRelevance:
    """How each image token bears on each text's similarity to the image.

    Attributes:
      similarity: float32 [B, T], cosine similarity of image b and text t (what ranks them).
      maps: float32 [B, T, rows * cols], per grid cell: the token's contribution (mean
        pooling; sums over cells to `similarity`) or its own cosine similarity (MAP pooling);
        zero on cells that are not tokens.
      kind: "contribution" or "token_similarity" (see the module docstring).
      grid: (rows, cols) of the image-token grid.
      cells: bool [B, rows * cols], which grid cells are image tokens.
    """

    similarity: np.ndarray
    maps: np.ndarray
    kind: str
    grid: tuple[int, int]
    cells: np.ndarray


def _image_tokens(module: DualEncoder, images):
    """Image tokens [B, N, width] after the stem and the image encoder (before pooling)."""
    x = module.image_stem(images)
    if module.image_depth:
        x, _ = module.image_encoder(x)
    return x


def _embedded(module: DualEncoder, images, texts):
    tokens = _image_tokens(module, images)
    return (
        module.image_projection(tokens).astype(jnp.float32),  # [B, N, E]: Dense(x_i)
        module.embed_images(images),  # [B, E]
        module.embed_texts(texts),  # [B, T, E]
    )


def retrieval_relevance(model: DualEncoder, params, images, texts) -> RetrievalRelevance:
    """Per-token relevance of texts [B, T, L] (token ids, 0 = padding) for images [B, H, W, 3]."""
    projected, image, text = jax.jit(
        lambda p, i, t: model.apply({"params": p}, i, t, method=_embedded)
    )(params, images, texts)
    projected, image, text = (np.asarray(a, np.float64) for a in (projected, image, text))
    similarity = np.einsum("bte,be->bt", text, image)
    if model.image_pool == "mean":
        pooled = projected.mean(1)  # u, [B, E]
        norm = np.maximum(np.linalg.norm(pooled, axis=-1), 1e-6)  # as l2_normalize
        maps = (
            np.einsum("bte,bne->btn", text, projected) / (projected.shape[1] * norm)[:, None, None]
        )
        kind = "contribution"
    else:
        tokens = np.asarray(l2_normalize(jnp.asarray(projected)), np.float64)
        maps = np.einsum("bte,bne->btn", text, tokens)
        kind = "token_similarity"
    grid, kept = token_grid(model, images, projected.shape[1])
    maps = on_grid(maps, None if kept is None else kept[:, None], grid)
    return RetrievalRelevance(
        similarity=similarity.astype(np.float32),
        maps=maps.astype(np.float32),
        kind=kind,
        grid=grid,
        cells=token_cells(kept, grid, len(images)),
    )

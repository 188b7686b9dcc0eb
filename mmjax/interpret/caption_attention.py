"""Where a captioner looks for each word: the decoder's cross-attention to the image tokens.

`caption_attention` runs the decoder of a `Captioner` teacher-forced on a caption it wrote
([BOS, w_1, ..., w_n]). The input at position t predicts word t + 1, so row t of a layer's
cross-attention [H, L, N] is where the decoder looked while writing word t + 1. The map of a
word is that row averaged over heads and layers: each head's row is a softmax over the N
image tokens, so every word's map sums to one.

Caveat: with encoder blocks (`encoder_depth` > 0) an image token's state is mixed with other
tokens' before the decoder reads it; the map says which token states the decoder read, drawn
at the cells those tokens started from.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.data.tokenizer import BOS, EOS
from mmjax.interpret.grid import on_grid, token_cells, token_grid
from mmjax.models.captioner import Captioner, captioner_decoder


@dataclasses.dataclass
class CaptionAttention:
    """The decoder's cross-attention for one caption per image.

    Attributes:
      tokens: int32 [B, L], the captions' token ids (no BOS; EOS, then 0s), as given.
      lengths: int [B], the number of words (tokens before EOS) of each caption.
      layers: per decoder layer, float32 [B, H, L, rows * cols]: row t is the attention while
        writing token t, on the token grid (zero on cells that are not tokens).
      maps: float32 [B, L, rows * cols], the mean of `layers` over layers and heads; rows of
        real words sum to one.
      logits: float32 [B, L, vocab], the teacher-forced next-token logits of the same pass (a
        greedy caption is their argmax).
      grid: (rows, cols) of the image-token grid.
      cells: bool [B, rows * cols], which grid cells are image tokens.
    """

    tokens: np.ndarray
    lengths: np.ndarray
    layers: list[np.ndarray]
    maps: np.ndarray
    logits: np.ndarray
    grid: tuple[int, int]
    cells: np.ndarray


def caption_lengths(tokens) -> np.ndarray:
    """Words before the first EOS (or padding) of each caption: int [B] for tokens [B, L]."""
    tokens = np.asarray(tokens)
    ends = (tokens == EOS) | (tokens == 0)
    return np.where(ends.any(-1), ends.argmax(-1), tokens.shape[-1])


def caption_attention(model: Captioner, params, images, tokens) -> CaptionAttention:
    """Cross-attention of `model` writing `tokens` [B, L] about images [B, H, W, 3].

    `tokens` are captions as the captioning task's predict returns them (no BOS; EOS, then
    0s), e.g. the model's own greedy captions; L must not exceed the model's max_len.
    """
    tokens = np.asarray(tokens, np.int32)
    inputs = np.concatenate([np.full((len(tokens), 1), BOS, np.int32), tokens[:, :-1]], axis=1)
    decoder = captioner_decoder(model)

    def run(p, images, inputs):
        encoded = model.apply({"params": p}, images, method=Captioner.encode)
        logits, inter = decoder.apply(
            {"params": p["decoder"]}, inputs, encoded, None, return_attention=True
        )
        cross = [inter["attention"][f"block_{i}"]["cross"] for i in range(decoder.depth)]
        return logits, [c.astype(jnp.float32) for c in cross]

    logits, cross = jax.jit(run)(params, images, inputs)
    grid, kept = token_grid(model, images, cross[0].shape[-1])
    per_row = None if kept is None else kept[:, None, None]  # the same cells for heads and rows
    layers = [on_grid(np.asarray(c), per_row, grid) for c in cross]
    return CaptionAttention(
        tokens=tokens,
        lengths=caption_lengths(tokens),
        layers=layers,
        maps=np.mean([layer.mean(1) for layer in layers], axis=0),
        logits=np.asarray(logits),
        grid=grid,
        cells=token_cells(kept, grid, len(tokens)),
    )

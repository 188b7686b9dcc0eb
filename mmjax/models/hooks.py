"""The model hooks a project supplies by name, and what each must compute.

Token selectors (`mmjax.registry.TOKEN_SELECTORS`, named by a patch stem's `token_selector`):
a function (images float [B, H, W, C] normalised, patch_size p, keep K) -> int [B, K], the
indices (row-major over the (H // p, W // p) patch grid) of the patches that become tokens.

Text-to-image attention biases (`mmjax.registry.TEXT_IMAGE_BIASES`, named by
`VQATransformer.lookup_bias`): a `TextImageBias`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class TextImageBias:
    """A bias of the text tokens' attention logits over the image tokens, in every fusion block.

    Attributes:
      context: a linen module class, built as context(vocab_size, num_heads, width, dtype=,
        param_dtype=, name="pointer") and called once per forward pass on (questions int32
        [B, Q, L] ids, image tokens [B, N, D]) -> a context (any arrays).
      features: (context, positions float32 [B, N, 2] of the image tokens on the grid,
        fused text length L') -> features, computed once and shared by every block.
      block: a linen module class, built as block(num_heads, dtype=, param_dtype=) under each
        block's "lookup_bias" and called on (text states [B, Q, L', D], features) -> the bias
        float32 [B, H, Q, L', N] added to that block's text-to-image logits.
    """

    context: type
    features: Callable[[Any, Any, int], Any]
    block: type

"""VQATransformer: image stem + question embedding + single-stream fusion + answer classifier."""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.attention import padding_mask
from mmjax.models.fusion import MultimodalEncoder
from mmjax.models.image import patch_positions
from mmjax.models.partitioning import constrain
from mmjax.models.stems import image_stem
from mmjax.models.text import TextEmbedding
from mmjax.models.transformer import Encoder
from mmjax.registry import TEXT_IMAGE_BIASES

Array = jax.Array
DType = Any


class VQATransformer(nn.Module):
    """Answers Q questions per image with one fused transformer pass per image.

    images [B, H, W, 3] -> stem -> image tokens [B, N, D]; questions [B, Q, L] -> TextEmbedding
    -> [B, Q, L, D]; both -> `MultimodalEncoder`; each question's text states are pooled (first
    token, i.e. BOS when the tokenizer prepends one, or the mean over non-padding tokens), then
    LayerNorm -> Dense -> GELU -> Dropout -> Dense to answer logits [B, Q, num_answers].

    Attributes:
      num_answers: number of answer classes.
      vocab_size: question vocabulary size (id 0 is padding).
      max_question_len: longest question L.
      width: token width D.
      depth: fusion transformer depth.
      num_heads: attention heads.
      mlp_dim: transformer MLP hidden width.
      dropout_rate: dropout on input tokens, residuals, MLPs and the head.
      attention_dropout_rate: dropout on attention weights.
      patch_size: patch size of the "patch" stem.
      patch_kernel: window of the "patch" stem's embedding, centred on each patch (0: the
        patch itself; see `PatchStem.kernel_size`).
      keep_tokens: the "patch" stem keeps only this many tokens per image, those that
        `token_selector` picks (0 keeps all; see `PatchStem`).
      token_selector: a registered token selector (`mmjax.registry.TOKEN_SELECTORS`).
      stem: "patch" (`PatchStem`), "conv" (`ConvStem`), "resnet", or "vivit" for clips
        [B, T, H, W, 3] in place of images (`mmjax.models.video.ViViT`; see `image_stem`).
      video: the "vivit" stem's options (a dict: kind, tubelet, depth, spatial_depth,
        temporal_depth, pool, mlp_dim; `mmjax.models.stems.VIVIT_OPTIONS`).
      conv_channels: channels of the "conv" stem.
      stem_coords: append pixel coordinates as input channels of the stem (CoordConv).
      posemb: image position embeddings, "learn" or "sincos2d".
      share_image: encode each image once for its Q questions (see `MultimodalEncoder`).
      pool: "bos" (first token), "mean" (masked mean over valid tokens) or "flatten" (a dense
        layer over the concatenated L token states).
      question_fusion: "tokens" (every question token enters the fusion stream) or "pooled"
        (each question is first encoded by `question_depth` text-only blocks and pooled with
        `pool`, and enters the fusion stream as one token: Q tokens per image instead of Q*L,
        which makes the text side of the fusion L times cheaper).
      question_depth: text-only encoder blocks before pooling, for question_fusion="pooled".
      condition_image: "none", or give each question its own image tokens (needs
        question_fusion="pooled"; costs Q times the image stream): "shift" adds a projection of
        the pooled question to every image token (an additive FiLM), "gate" multiplies a
        projection of every image token by a projection of the question, channel by channel,
        so which channels (e.g. which colour) matter depends on the question from step 0.
      remat: recompute the fusion blocks' activations in the backward pass (less memory).
      scan_layers: run the fusion blocks as one `nn.scan` (parameters stacked under
        "fusion/blocks"; compiles once for any depth).
      head_dim: hidden width of the answer MLP; defaults to width.
      lookup_bias: "none", or a registered text-to-image bias
        (`mmjax.registry.TEXT_IMAGE_BIASES`, e.g. the built-in project's "pointer"): in every
        fusion block, each question's look-up at the image is biased by features of the
        question and the image tokens' positions. Needs the "patch" stem.
      dtype: computation dtype (logits are always float32).
      param_dtype: parameter dtype.
    """

    num_answers: int = 10
    vocab_size: int = 64
    max_question_len: int = 16
    width: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int = 512
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0
    patch_size: int = 5
    patch_kernel: int = 0
    keep_tokens: int = 0
    token_selector: str = ""
    stem: str = "patch"
    conv_channels: Sequence[int] = (32, 64, 128, 128)
    stem_coords: bool = False
    video: Any = None
    posemb: str = "learn"
    share_image: bool = True
    pool: str = "bos"
    question_fusion: str = "tokens"
    question_depth: int = 0
    condition_image: str = "none"
    remat: bool = False
    scan_layers: bool = False
    head_dim: int | None = None
    lookup_bias: str = "none"
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    def _pool(self, text: Array, mask: Array) -> Array:
        if self.pool == "bos":
            return text[..., 0, :]
        if self.pool == "mean":
            mask = mask[..., None].astype(text.dtype)
            # max(.., 1): an all-padding question (a filler slot) pools to zeros, not NaN.
            return (text * mask).sum(-2) / jnp.maximum(mask.sum(-2), 1.0)
        if self.pool == "flatten":
            # A dense map of the concatenated token states: every word keeps its full weight
            # (a mean over L tokens would scale the one word that names the colour by 1/L).
            text = jnp.where(mask[..., None], text, 0).reshape(*text.shape[:-2], -1)
            return nn.Dense(self.width, name="question_pool", dtype=self.dtype)(text)
        raise ValueError(f"Unknown pool {self.pool!r}; use 'bos', 'mean' or 'flatten'.")

    def _bias_features(self, images, questions, image_tokens, text_tokens):
        """The features of the registered text-to-image bias `lookup_bias`, for every block.

        Its `context` module (parameters under "pointer") reads the questions and the image
        tokens; its `features` function places the result at the tokens' grid positions.
        """
        if self.stem != "patch":
            raise ValueError(f"lookup_bias={self.lookup_bias!r} needs stem='patch'.")
        bias = TEXT_IMAGE_BIASES.get(self.lookup_bias)
        positions = patch_positions(images, self.patch_size, self.keep_tokens, self.token_selector)
        context = bias.context(
            self.vocab_size,
            self.num_heads,
            self.width,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="pointer",
        )(questions, image_tokens)
        return bias.features(context, positions, text_tokens.shape[-2])

    def _embed(self, images: Array, questions: Array, train: bool):
        """Image tokens [B, N, D]; question tokens [B, Q, L', D] and their mask [B, Q, L'].

        With question_fusion="pooled" each question is one token (L' = 1).
        """
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        stem = image_stem(
            self.stem,
            self.width,
            patch_size=self.patch_size,
            patch_kernel=self.patch_kernel,
            keep_tokens=self.keep_tokens,
            token_selector=self.token_selector,
            coords=self.stem_coords,
            conv_channels=self.conv_channels,
            posemb=self.posemb,
            video=self.video,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            **kw,
        )
        image_tokens = constrain(stem(images), ("batch", None, None))
        text_tokens = TextEmbedding(
            self.vocab_size, self.width, self.max_question_len, name="text_embedding", **kw
        )(questions)
        dropout = nn.Dropout(self.dropout_rate)
        image_tokens = dropout(image_tokens, deterministic=not train)
        text_tokens = dropout(text_tokens, deterministic=not train)
        text_mask = questions != 0
        if self.question_fusion == "tokens":
            return image_tokens, text_tokens, text_mask
        if self.question_fusion != "pooled":
            raise ValueError(
                f"Unknown question_fusion {self.question_fusion!r}; use 'tokens' or 'pooled'."
            )
        if self.question_depth:
            text_tokens, _ = Encoder(
                depth=self.question_depth,
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                dropout_rate=self.dropout_rate,
                name="question_encoder",
                **kw,
            )(text_tokens, mask=padding_mask(text_mask), train=train)
        text_tokens = self._pool(text_tokens, text_mask)[..., None, :]
        return image_tokens, text_tokens, jnp.ones(text_tokens.shape[:-1], bool)

    def _condition(self, image_tokens: Array, text_tokens: Array, text_mask: Array):
        """Each question's own copy of the image tokens, conditioned on the question.

        [B, N, D], [B, Q, 1, D], [B, Q, 1] -> [B * Q, N, D], [B * Q, 1, 1, D], [B * Q, 1, 1]:
        the per-token MLPs see (token, question) jointly from the first layer on, at Q times
        the image stream's cost.
        """
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.question_fusion != "pooled":
            raise ValueError("condition_image needs question_fusion='pooled'.")
        if self.condition_image == "shift":
            shift = nn.Dense(self.width, name="image_condition", **kw)(text_tokens)
            image_tokens = image_tokens[:, None] + shift
        elif self.condition_image == "gate":
            gate = nn.Dense(self.width, name="image_gate", **kw)(text_tokens)
            image_tokens = nn.Dense(self.width, name="image_gated", **kw)(image_tokens)
            image_tokens = image_tokens[:, None] * gate
        else:
            raise ValueError(
                f"Unknown condition_image {self.condition_image!r}; use 'none', 'shift' or 'gate'."
            )
        image_tokens = image_tokens.reshape(-1, *image_tokens.shape[2:])
        text_tokens = text_tokens.reshape(-1, 1, *text_tokens.shape[2:])
        return image_tokens, text_tokens, text_mask.reshape(-1, 1, text_mask.shape[-1])

    def _answer_head(self, text_out: Array, text_mask: Array, train: bool):
        """Fused question states [B, Q, L', D] -> (logits [B, Q, A] float32, pre-logits)."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.question_fusion == "pooled":
            x = text_out[..., 0, :]  # the question's single fused token
        else:
            x = self._pool(text_out, text_mask)
        pre_logits = x = nn.LayerNorm(name="head_norm", **kw)(x)
        x = nn.gelu(nn.Dense(self.head_dim or self.width, name="head_hidden", **kw)(x))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        # A zero-initialised output layer (uniform answers at step 0) held the model at the
        # question-only baseline much longer (the built-in project's vqa_readout_probe).
        logits = nn.Dense(self.num_answers, name="head_out", **kw)(x)
        return logits.astype(jnp.float32), pre_logits

    @nn.compact
    def __call__(
        self,
        images: Array,
        questions: Array,
        train: bool = False,
        return_attention: bool = False,
    ) -> tuple[Array, dict[str, Any]]:
        """Predict answer logits.

        Args:
          images: [B, H, W, 3] uint8 (or float in [0, 1]).
          questions: [B, Q, L] int32 token ids, 0 = padding.
          train: enables dropout ("dropout" rng).
          return_attention: add the fusion attention weights to the intermediates.

        Returns:
          (logits [B, Q, num_answers] float32, intermediates) with intermediates["pre_logits"]
          the pooled question states [B, Q, width] and, with `return_attention`, the
          "image_attention" / "text_attention" dicts of `MultimodalEncoder`.
        """
        image_tokens, text_tokens, text_mask = self._embed(images, questions, train)
        if self.condition_image != "none":
            image_tokens, text_tokens, text_mask = self._condition(
                image_tokens, text_tokens, text_mask
            )
        bias_features = None
        if self.lookup_bias != "none":
            bias_features = self._bias_features(images, questions, image_tokens, text_tokens)
        _, text_out, intermediates = MultimodalEncoder(
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            share_image=self.share_image,
            remat=self.remat,
            scan_layers=self.scan_layers,
            text_image_bias=self.lookup_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="fusion",
        )(
            image_tokens,
            text_tokens,
            text_mask,
            train=train,
            return_attention=return_attention,
            bias_features=bias_features,
        )
        batch, num_questions = questions.shape[:2]
        text_out = text_out.reshape(batch, num_questions, *text_out.shape[2:])
        text_mask = text_mask.reshape(batch, num_questions, text_mask.shape[-1])
        logits, pre_logits = self._answer_head(text_out, text_mask, train)
        return logits, {**intermediates, "pre_logits": pre_logits}

"""Contrastive image-text losses: CLIP (softmax) and SigLIP (sigmoid), unsharded and sharded.

Every function takes L2-normalised embeddings `img` [B, D] and `txt` [B, D] where row i of
each is a matched pair (the positives are the diagonal), and returns a scalar float32 loss.
The scale is a multiplier on the cosine similarities (CLIP's exp(t), i.e. 1 / temperature);
pass the exponentiated value of a learned log-scale.

  softmax (CLIP, Radford et al. 2021):
      logits = s * img @ txt.T                                             [B, B]
      loss   = (mean_i CE(logits[i, :], i) + mean_j CE(logits[:, j], j)) / 2
  sigmoid (SigLIP, Zhai et al. 2023), normalised by the batch size as in the paper:
      loss   = -1/B * sum_i sum_j log sigmoid(z_ij * (s * img_i . txt_j + b)),
      z_ij   = +1 when i == j, -1 otherwise.

The sharded versions compute the same scalar over the GLOBAL batch when its rows are split over
one or more mesh axes (default ("data", "fsdp"), as in `mmjax.train.sharding`), using
`jax.shard_map`:

  softmax: each device all-gathers the other devices' embeddings ([B, D], small) and computes
      only its own rows of each direction's logits, [B/n, B]; never the full [B, B].
  sigmoid: the chunked "ring" of the SigLIP paper: each device scores its local [B/n, B/n]
      block (positives on its diagonal), then passes its text chunk to the next device with
      `jax.lax.ppermute` n - 1 times, adding the all-negative blocks. No device holds more than
      one [B/n, B/n] block of logits; in the backward pass each block is recomputed from the
      saved text chunks ([B/n, D] each) rather than stored.

Both are differentiable (the collectives transpose to their duals: all-gather to
reduce-scatter, ppermute to the reverse ppermute) and give the unsharded gradients. The
`*_per_shard` functions are the bodies, for callers already inside a `shard_map`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

AxisNames = str | Sequence[str]


def _as_float(x: jax.Array) -> jax.Array:
    # Logits and their log-sum-exps are computed in at least float32 even for bfloat16
    # embeddings: the cost is a [B, D] cast, and bf16 logits lose the ranking signal.
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _similarities(a: jax.Array, b: jax.Array) -> jax.Array:
    """Similarities a @ b.T [M, N] of a [M, D] and b [N, D]."""
    return jnp.einsum("md,nd->mn", a, b)


def _positive_logits(img: jax.Array, txt: jax.Array, logit_scale) -> jax.Array:
    # The diagonal as a row-wise dot product [B]: the sharded bodies compute it from their
    # local rows this way, with no device index, so the unsharded loss does the same.
    return logit_scale * jnp.sum(img * txt, axis=-1)


# ---------------------------------------------------------------- unsharded


def softmax_contrastive_loss(img: jax.Array, txt: jax.Array, logit_scale) -> jax.Array:
    """CLIP loss: mean of the image->text and text->image cross-entropies.

    Args:
      img: [B, D] L2-normalised image embeddings.
      txt: [B, D] L2-normalised text embeddings; txt[i] is the caption of img[i].
      logit_scale: scalar multiplier of the cosine similarities (1 / temperature).

    Returns:
      Scalar: (mean_i [lse_j l_ij - l_ii] + mean_j [lse_i l_ij - l_jj]) / 2 with
      l = logit_scale * img @ txt.T.
    """
    img, txt = _as_float(img), _as_float(txt)
    logits = logit_scale * _similarities(img, txt)
    positive = _positive_logits(img, txt, logit_scale)
    i2t = jax.nn.logsumexp(logits, axis=1) - positive
    t2i = jax.nn.logsumexp(logits, axis=0) - positive
    return (jnp.mean(i2t) + jnp.mean(t2i)) / 2


def sigmoid_contrastive_loss(img: jax.Array, txt: jax.Array, logit_scale, logit_bias) -> jax.Array:
    """SigLIP loss: every (image, text) pair is an independent binary classification.

    Args:
      img: [B, D] L2-normalised image embeddings.
      txt: [B, D] L2-normalised text embeddings; txt[i] is the caption of img[i].
      logit_scale: scalar multiplier of the cosine similarities.
      logit_bias: scalar added to every logit (SigLIP initialises it at -10).

    Returns:
      Scalar: -1/B * sum_ij log sigmoid(z_ij (logit_scale img_i . txt_j + logit_bias)), z = +1
      on the diagonal and -1 elsewhere (divided by the batch size B, as in the paper, not B^2).
    """
    img, txt = _as_float(img), _as_float(txt)
    logits = logit_scale * _similarities(img, txt) + logit_bias
    labels = 2 * jnp.eye(img.shape[0], dtype=logits.dtype) - 1
    return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / img.shape[0]


# ---------------------------------------------------------------- per shard (inside shard_map)


def softmax_contrastive_loss_per_shard(
    img: jax.Array, txt: jax.Array, logit_scale, axis_name: AxisNames
) -> jax.Array:
    """The CLIP loss over the global batch, from inside a `shard_map` over `axis_name`.

    Args:
      img: [B/n, D] this device's rows of the image embeddings.
      txt: [B/n, D] the matching rows of the text embeddings.
      logit_scale: scalar, the same on every device.
      axis_name: the mesh axis (or tuple of axes) the batch is split over, n devices in all.

    Returns:
      The global `softmax_contrastive_loss`, the same scalar on every device.
    """
    img, txt = _as_float(img), _as_float(txt)
    # Embeddings are small ([B, D]); gathering them lets each device compute its own rows of
    # both directions' logits, [B/n, B], instead of the [B, B] matrix.
    all_img = jax.lax.all_gather(img, axis_name, tiled=True)
    all_txt = jax.lax.all_gather(txt, axis_name, tiled=True)
    positive = _positive_logits(img, txt, logit_scale)
    i2t = jax.nn.logsumexp(logit_scale * _similarities(img, all_txt), axis=1) - positive
    t2i = jax.nn.logsumexp(logit_scale * _similarities(txt, all_img), axis=1) - positive
    total = jax.lax.psum(jnp.sum(i2t) + jnp.sum(t2i), axis_name)
    return total / (2 * all_img.shape[0])


def sigmoid_contrastive_loss_per_shard(
    img: jax.Array, txt: jax.Array, logit_scale, logit_bias, axis_name: AxisNames
) -> jax.Array:
    """The SigLIP loss over the global batch by the ring scheme, inside a `shard_map`.

    Args:
      img: [B/n, D] this device's rows of the image embeddings.
      txt: [B/n, D] the matching rows of the text embeddings.
      logit_scale: scalar, the same on every device.
      logit_bias: scalar, the same on every device.
      axis_name: the mesh axis (or tuple of axes) the batch is split over, n devices in all.

    Returns:
      The global `sigmoid_contrastive_loss`, the same scalar on every device.
    """
    img, txt = _as_float(img), _as_float(txt)
    local = img.shape[0]
    n = jax.lax.axis_size(axis_name)

    def block_loss(text_chunk, labels):
        logits = logit_scale * _similarities(img, text_chunk) + logit_bias
        return -jnp.sum(jax.nn.log_sigmoid(labels * logits))

    # The local block holds this device's positives on its diagonal.
    total = block_loss(txt, 2 * jnp.eye(local, dtype=img.dtype) - 1)
    if n > 1:
        # Every other device's text chunk is all negatives for our images. Remat each block so
        # the backward pass keeps only the text chunks ([B/n, D]), not n - 1 logit blocks.
        negative_block = jax.checkpoint(lambda chunk: block_loss(chunk, -1.0))
        shift = [(j, (j + 1) % n) for j in range(n)]

        def step(carry, _):
            total, chunk = carry
            chunk = jax.lax.ppermute(chunk, axis_name, shift)
            return (total + negative_block(chunk), chunk), None

        (total, _), _ = jax.lax.scan(step, (total, txt), None, length=n - 1)
    return jax.lax.psum(total, axis_name) / (local * n)


# ---------------------------------------------------------------- sharded wrappers


def _batch_axes(mesh: Mesh, batch_axes: AxisNames, batch_size: int) -> tuple[str, ...]:
    axes = (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes)
    # Axes the mesh lacks are skipped, as in mmjax.train.sharding.batch_axes.
    axes = tuple(a for a in axes if a in mesh.shape)
    n = 1
    for a in axes:
        n *= mesh.shape[a]
    if batch_size % n:
        raise ValueError(
            f"contrastive loss: batch size {batch_size} does not split over the {n} devices "
            f"of mesh axes {axes}"
        )
    return axes


def sharded_softmax_contrastive_loss(
    img: jax.Array,
    txt: jax.Array,
    logit_scale,
    mesh: Mesh,
    batch_axes: AxisNames = ("data", "fsdp"),
) -> jax.Array:
    """`softmax_contrastive_loss` with the batch split over `batch_axes` of `mesh`.

    Args:
      img: [B, D] global image embeddings (any sharding; shard_map splits rows over the axes).
      txt: [B, D] global text embeddings.
      logit_scale: scalar multiplier of the cosine similarities.
      mesh: the device mesh.
      batch_axes: mesh axes the batch dimension is split over; axes absent from the mesh are
        skipped. B must divide by the product of their sizes.

    Returns:
      The same scalar as `softmax_contrastive_loss(img, txt, logit_scale)`; no device holds
      more than [B/n, B] logits.
    """
    axes = _batch_axes(mesh, batch_axes, img.shape[0])
    if not axes:
        return softmax_contrastive_loss(img, txt, logit_scale)
    rows = PartitionSpec(axes)
    body = functools.partial(softmax_contrastive_loss_per_shard, axis_name=axes)
    fn = jax.shard_map(
        body, mesh=mesh, in_specs=(rows, rows, PartitionSpec()), out_specs=PartitionSpec()
    )
    return fn(img, txt, _as_float(logit_scale))


def sharded_sigmoid_contrastive_loss(
    img: jax.Array,
    txt: jax.Array,
    logit_scale,
    logit_bias,
    mesh: Mesh,
    batch_axes: AxisNames = ("data", "fsdp"),
) -> jax.Array:
    """`sigmoid_contrastive_loss` by the SigLIP ring, batch split over `batch_axes` of `mesh`.

    Args:
      img: [B, D] global image embeddings.
      txt: [B, D] global text embeddings.
      logit_scale: scalar multiplier of the cosine similarities.
      logit_bias: scalar added to every logit.
      mesh: the device mesh.
      batch_axes: mesh axes the batch dimension is split over; axes absent from the mesh are
        skipped. B must divide by the product of their sizes.

    Returns:
      The same scalar as `sigmoid_contrastive_loss(img, txt, logit_scale, logit_bias)`; no
      device holds more than one [B/n, B/n] block of logits at a time.
    """
    axes = _batch_axes(mesh, batch_axes, img.shape[0])
    if not axes:
        return sigmoid_contrastive_loss(img, txt, logit_scale, logit_bias)
    rows, scalar = PartitionSpec(axes), PartitionSpec()
    body = functools.partial(sigmoid_contrastive_loss_per_shard, axis_name=axes)
    fn = jax.shard_map(
        body, mesh=mesh, in_specs=(rows, rows, scalar, scalar), out_specs=PartitionSpec()
    )
    return fn(img, txt, _as_float(logit_scale), _as_float(logit_bias))

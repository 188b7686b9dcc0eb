"""Hard negative captions for contrastive retrieval: a caption with one word swapped.

Random batches rarely hold two scenes that differ in one detail, so in-batch negatives teach
little about details once the coarse ones are learned. A hard negative of image i is its own
(positive) caption with ONE word changed for its partner ("square" <-> "circle", "left" <->
"right"): it describes a scene that differs from image i in exactly that, and the loss must
rank it below the true caption. They are made on the fly from each step's sampled captions and
rng, so every step brings new ones.

Configured by `config.hard_negatives`, a list of groups, each a string of word pairs
("square:circle" or "left:right,top:bottom"); each group gives one hard negative per image,
swapping one occurrence (drawn uniformly) of any word of the group. An image whose caption has
no word of a group gets no hard negative of that group (masked out of the loss).

Losses (img, txt [B, D] unit-norm, diagonal pairs; hard [G, B, D], valid [G, B]):
  softmax: the image->text cross-entropy of each image runs over the B captions of the batch
      and the G x B hard negatives (every image's, all of them wrong for image i); text->image
      is CLIP's, over the B images. G = 0 is `contrastive.softmax_contrastive_loss`.
  sigmoid: SigLIP's sum over the B x B pairs plus the B x G*B (image, hard negative) pairs, all
      negatives; divided by B. G = 0 is `contrastive.sigmoid_contrastive_loss`.
Both are computed on the whole batch (no shard_map): under a mesh XLA gathers what it needs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.config_utils import ConfigError

NEG_INF = -1e9  # masked logits: finite, so a fully masked row gives no NaN gradient


def parse_groups(groups) -> list[list[tuple[str, str]]]:
    """config.hard_negatives (strings "a:b,c:d") -> per group, its (word, partner) pairs.

    Raises ConfigError naming a malformed group.
    """
    parsed = []
    for group in groups:
        pairs = []
        for pair in str(group).split(","):
            words = [w.strip() for w in pair.split(":")]
            if len(words) != 2 or not all(words) or words[0] == words[1]:
                raise ConfigError(
                    f"config.hard_negatives: {group!r} is not a list of word pairs 'a:b,c:d'"
                )
            pairs.append((words[0], words[1]))
        parsed.append(pairs)
    return parsed


def partner_tables(groups, word_id, vocab_size: int) -> np.ndarray:
    """int32 [G, V]: table[g, id] = the id its group-g partner has, or id itself (no partner).

    `word_id(word)` gives a word's id (None when the vocabulary lacks it). Raises ConfigError
    naming a word outside the vocabulary: a swap to <unk> would be a trivial negative.
    """
    tables = np.tile(np.arange(vocab_size, dtype=np.int32), (len(groups), 1))
    for g, pairs in enumerate(parse_groups(groups)):
        for a, b in pairs:
            ids = word_id(a), word_id(b)
            if None in ids:
                missing = a if ids[0] is None else b
                raise ConfigError(
                    f"config.hard_negatives: the word {missing!r} is not in the caption vocabulary"
                )
            tables[g, ids[0]], tables[g, ids[1]] = ids[1], ids[0]
    return tables


def swap_one_word(tokens: jax.Array, partner: jax.Array, rng) -> tuple[jax.Array, jax.Array]:
    """Each caption with one swappable word changed for its partner.

    Args:
      tokens: int [B, L] captions.
      partner: int [V], partner[id] = the id to swap id for (id itself: not swappable).
      rng: picks the occurrence, uniformly among the caption's swappable positions.

    Returns:
      (hard int [B, L], valid bool [B]): valid is False for captions with no swappable word
      (their row is returned unchanged and must not count as a negative).
    """
    swapped = partner[tokens]  # [B, L]
    swappable = swapped != tokens
    valid = swappable.any(axis=-1)
    logits = jnp.where(swappable, 0.0, -jnp.inf)
    position = jax.random.categorical(rng, jnp.where(valid[:, None], logits, 0.0))  # [B]
    at = (jnp.arange(tokens.shape[-1])[None, :] == position[:, None]) & valid[:, None]
    return jnp.where(at, swapped, tokens), valid


def softmax_loss(img, txt, hard, valid, logit_scale) -> jax.Array:
    """CLIP loss with hard negatives among each image's candidates (module docstring).

    img, txt: float [B, D]; hard: float [G, B, D]; valid: bool [G, B]; returns a scalar.
    """
    img, txt, hard = (x.astype(jnp.float32) for x in (img, txt, hard))
    logits = logit_scale * img @ txt.T  # [B, B]
    positive = jnp.diagonal(logits)
    hard_logits = logit_scale * jnp.einsum("id,gjd->igj", img, hard)  # [B, G, B]
    hard_logits = jnp.where(valid[None], hard_logits, NEG_INF).reshape(img.shape[0], -1)
    i2t = jax.nn.logsumexp(jnp.concatenate([logits, hard_logits], axis=1), axis=1) - positive
    t2i = jax.nn.logsumexp(logits, axis=0) - positive
    return (jnp.mean(i2t) + jnp.mean(t2i)) / 2


def sigmoid_loss(img, txt, hard, valid, logit_scale, logit_bias) -> jax.Array:
    """SigLIP loss with the (image, hard negative) pairs as extra negatives (module docstring).

    img, txt: float [B, D]; hard: float [G, B, D]; valid: bool [G, B]; returns a scalar.
    """
    img, txt, hard = (x.astype(jnp.float32) for x in (img, txt, hard))
    batch = img.shape[0]
    logits = logit_scale * img @ txt.T + logit_bias
    labels = 2 * jnp.eye(batch, dtype=logits.dtype) - 1
    pairs = jnp.sum(jax.nn.log_sigmoid(labels * logits))
    hard_logits = logit_scale * jnp.einsum("id,gjd->igj", img, hard) + logit_bias
    hard_pairs = jnp.sum(jnp.where(valid[None], jax.nn.log_sigmoid(-hard_logits), 0.0))
    return -(pairs + hard_pairs) / batch

"""Hard negative captions for contrastive retrieval: a caption with one word swapped.

Random batches rarely hold two scenes that differ in one detail, so in-batch negatives teach
little about details once the coarse ones are learned. A hard negative of image i is its own
(positive) caption with ONE word changed for its partner ("square" <-> "circle", "left" <->
"right"): it describes a scene that differs from image i in exactly that, and the loss must
rank it below the true caption. They are made on the fly from each step's sampled captions and
rng, so every step brings new ones.

Configured by `config.hard_negatives`, a list of groups; each group gives one hard negative per
image. Two kinds of group:
  word pairs, "square:circle" or "left:right,top:bottom": one occurrence (drawn uniformly) of
      any word of the group is swapped for its partner (a shape or a place changed);
  a word set, "red|green|blue": two occurrences of different words of the set (drawn
      uniformly) exchange places ("a red square ..., a green circle ..." -> "a green square
      ..., a red circle ...": two objects' colours exchanged, or two objects' order).
An image whose caption has no such word (two for a set) gets no hard negative of that group
(masked out of the loss).

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


def is_word_set(group: str) -> bool:
    """Whether `group` is a word set ("a|b|c", words exchange places) rather than word pairs."""
    return "|" in str(group)


def parse_groups(groups) -> list[list[tuple[str, str]]]:
    """config.hard_negatives -> per group, its (word, partner) pairs ("a:b,c:d").

    A word set "a|b|c" gives (word, word) for each of its words. Raises ConfigError naming a
    malformed group.
    """
    parsed = []
    for group in groups:
        if is_word_set(group):
            words = [w.strip() for w in str(group).split("|")]
            if len(words) < 2 or not all(words) or len(set(words)) != len(words):
                raise ConfigError(
                    f"config.hard_negatives: {group!r} is not a set of distinct words 'a|b|c'"
                )
            parsed.append([(w, w) for w in words])
            continue
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

    For a word set, table[g, id] = -1 marks its words (they exchange places).

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
            if a == b:  # a word set's member
                tables[g, ids[0]] = -1
            else:
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


def exchange_two_words(tokens: jax.Array, members: jax.Array, rng) -> tuple[jax.Array, jax.Array]:
    """Each caption with two of its words from a set exchanging places.

    Args:
      tokens: int [B, L] captions.
      members: bool [V], the set's words.
      rng: draws the first position uniformly among the members, the second uniformly among
        the members holding another word.

    Returns:
      (hard int [B, L], valid bool [B]): valid is False for captions without two different
      members (returned unchanged).
    """
    first_rng, second_rng = jax.random.split(rng)
    member = members[tokens]  # [B, L]
    valid = member.any(-1)
    first = jax.random.categorical(first_rng, jnp.where(member, 0.0, -jnp.inf))  # [B]
    word = jnp.take_along_axis(tokens, first[:, None], axis=1)  # [B, 1]
    other = member & (tokens != word)
    valid = valid & other.any(-1)
    second = jax.random.categorical(second_rng, jnp.where(other, 0.0, -jnp.inf))
    second = jnp.where(valid, second, first)
    other_word = jnp.take_along_axis(tokens, second[:, None], axis=1)
    positions = jnp.arange(tokens.shape[-1])[None, :]
    hard = jnp.where(positions == first[:, None], other_word, tokens)
    hard = jnp.where(positions == second[:, None], word, hard)
    return jnp.where(valid[:, None], hard, tokens), valid


def make_hard(tokens: jax.Array, table: jax.Array, rng) -> tuple[jax.Array, jax.Array]:
    """One group's hard negatives of captions int [B, L] from its `partner_tables` row [V].

    A row with -1 entries is a word set (`exchange_two_words`), else word pairs
    (`swap_one_word`). Returns (hard int [B, L], valid bool [B]).
    """
    exchanged = exchange_two_words(tokens, table < 0, rng)
    swapped = swap_one_word(tokens, table, rng)
    is_set = (table < 0).any()
    return jax.tree.map(lambda a, b: jnp.where(is_set, a, b), exchanged, swapped)


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

"""Autoregressive generation with a `TextDecoder`: greedy, beam search and sampling.

Every function is jitted (the decoder module, `max_len`, `use_cache`, `beam_size` and `top_k`
are static) and runs a `lax.while_loop` over static shapes. Outputs are tokens [B, max_len]
int32 holding the generated tokens up to and including EOS, then padding (`decoder.pad_id`),
plus the summed log-probability [B] float32 of those tokens under the model (EOS included).
BOS is fed to the decoder but not returned. A sequence that never emits EOS fills all
`max_len` positions.

`use_cache=True` feeds one token per step through the decoder's key/value cache
(`decode=True`); `use_cache=False` re-runs the full decoder on the whole [B, max_len] token
buffer at every step (the future positions are padding, hidden by the causal and padding
masks) and reads the logits at the current position: the slow reference the cache must match.
Both need `max_len <= decoder.max_len`.

The padding token is never generated: its log-probability is set to -inf before choosing, so
that padding in the outputs always means "after EOS". Reported log-probabilities are otherwise
the model's own (log_softmax over the full vocabulary, untouched by temperature or top-k).
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from mmjax.models.decoder import TextDecoder, init_cache

Array = jax.Array

_STATIC = ("decoder", "max_len", "use_cache")


def _log_probs(logits: Array, pad_id: int) -> Array:
    """Log-softmax over the vocabulary [..., V] with padding made impossible."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return logp.at[..., pad_id].set(-jnp.inf)


def _next_logits(
    decoder: TextDecoder,
    params: Any,
    encoded: Array,
    encoded_mask: Array | None,
    bos_id: int,
    tokens: Array,
    t: Array,
    cache: Any,
) -> tuple[Array, Any]:
    """Logits [B, V] for output position t given the outputs tokens[:, :t] (tokens [B, T]).

    With a cache, only the previous token (BOS at t = 0) goes through the decoder; without,
    the decoder re-reads [BOS, tokens[:, :T-1]] and position t is picked out.
    """
    if cache is not None:
        prev = jax.lax.dynamic_index_in_dim(tokens, jnp.maximum(t - 1, 0), axis=1)
        prev = jnp.where(t == 0, bos_id, prev)
        (logits, _), variables = decoder.apply(
            {"params": params, "cache": cache},
            prev,
            encoded,
            encoded_mask,
            decode=True,
            mutable=["cache"],
        )
        return logits[:, 0], variables["cache"]
    bos = jnp.full((tokens.shape[0], 1), bos_id, tokens.dtype)
    inputs = jnp.concatenate([bos, tokens[:, :-1]], axis=1)
    logits, _ = decoder.apply({"params": params}, inputs, encoded, encoded_mask)
    return jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False), None


def _check(decoder: TextDecoder, max_len: int) -> None:
    if max_len > decoder.max_len:
        raise ValueError(f"max_len={max_len} exceeds the decoder's max_len={decoder.max_len}.")


def _generate(
    decoder: TextDecoder,
    params: Any,
    encoded: Array,
    encoded_mask: Array | None,
    bos_id: int,
    eos_id: int,
    max_len: int,
    use_cache: bool,
    choose: Callable[[Array, Array, Array], Array],
) -> tuple[Array, Array]:
    """One-hypothesis-per-example loop shared by greedy and sampling.

    `choose(logits [B, V], log_probs [B, V], t)` returns the next tokens [B].
    """
    _check(decoder, max_len)
    batch = encoded.shape[0]
    pad = decoder.pad_id
    cache = init_cache(decoder, params, encoded, encoded_mask, max_len) if use_cache else None

    def cond(state):
        t, _, _, finished, _ = state
        return (t < max_len) & ~jnp.all(finished)

    def body(state):
        t, tokens, logp, finished, cache = state
        logits, cache = _next_logits(
            decoder, params, encoded, encoded_mask, bos_id, tokens, t, cache
        )
        log_probs = _log_probs(logits, pad)
        token = jnp.where(finished, pad, choose(logits, log_probs, t)).astype(jnp.int32)
        step = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
        logp = logp + jnp.where(finished, 0.0, step)
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, token[:, None], t, axis=1)
        return t + 1, tokens, logp, finished | (token == eos_id), cache

    state = (
        jnp.array(0, jnp.int32),
        jnp.full((batch, max_len), pad, jnp.int32),
        jnp.zeros((batch,), jnp.float32),
        jnp.zeros((batch,), bool),
        cache,
    )
    _, tokens, logp, _, _ = jax.lax.while_loop(cond, body, state)
    return tokens, logp


@functools.partial(jax.jit, static_argnames=_STATIC)
def greedy(
    decoder: TextDecoder,
    params: Any,
    encoded: Array,
    encoded_mask: Array | None = None,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    use_cache: bool = True,
) -> tuple[Array, Array]:
    """Greedy decoding: the most likely next token at every step.

    Args:
      decoder: the `TextDecoder` module (static).
      params: its parameters.
      encoded: [B, N, D_enc] encoder output.
      encoded_mask: optional [B, N] bool, True for valid encoder tokens.
      bos_id: token fed first.
      eos_id: token that ends a sequence.
      max_len: number of output positions (static).
      use_cache: key/value cache (True) or full re-run per step (False) (static).

    Returns:
      (tokens [B, max_len] int32, padding after EOS; log-probability [B] float32).
    """

    def choose(logits, log_probs, t):
        return jnp.argmax(log_probs, axis=-1)

    return _generate(
        decoder, params, encoded, encoded_mask, bos_id, eos_id, max_len, use_cache, choose
    )


@functools.partial(jax.jit, static_argnames=_STATIC + ("top_k",))
def sample(
    decoder: TextDecoder,
    params: Any,
    encoded: Array,
    encoded_mask: Array | None = None,
    *,
    rng: Array,
    bos_id: int,
    eos_id: int,
    max_len: int,
    temperature: float | Array = 1.0,
    top_k: int | None = None,
    use_cache: bool = True,
) -> tuple[Array, Array]:
    """Ancestral sampling from softmax(logits / temperature), optionally among the top k.

    Args:
      decoder: the `TextDecoder` module (static).
      params: its parameters.
      encoded: [B, N, D_enc] encoder output.
      encoded_mask: optional [B, N] bool, True for valid encoder tokens.
      rng: PRNG key; step t uses `fold_in(rng, t)`, so cached and uncached runs draw the same.
      bos_id: token fed first.
      eos_id: token that ends a sequence.
      max_len: number of output positions (static).
      temperature: > 0; lower is greedier.
      top_k: sample only among the k most likely tokens (static); None or 0 = all.
      use_cache: key/value cache (True) or full re-run per step (False) (static).

    Returns:
      (tokens [B, max_len] int32, padding after EOS; log-probability [B] float32 of the
      sampled tokens under the model, i.e. at temperature 1 without top-k).
    """

    def choose(logits, log_probs, t):
        # Padding is excluded before top-k so that k real tokens remain.
        scaled = jnp.where(jnp.isneginf(log_probs), -jnp.inf, logits / temperature)
        if top_k:
            kth = jax.lax.top_k(scaled, top_k)[0][:, -1:]
            scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
        return jax.random.categorical(jax.random.fold_in(rng, t), scaled, axis=-1)

    return _generate(
        decoder, params, encoded, encoded_mask, bos_id, eos_id, max_len, use_cache, choose
    )


def length_penalty_factor(length: Array, alpha: float) -> Array:
    """GNMT length penalty ((5 + length) / 6) ** alpha; beam scores are log-prob / this."""
    return ((5.0 + length) / 6.0) ** alpha


def _gather_beams(x: Array, index: Array) -> Array:
    """Entries index [B, k'] along axis 1 of x [B, M, ...]: [B, k', ...]."""
    index = index.reshape(index.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=1)


def _gather_cache(cache: Any, index: Array, batch: int, beam_size: int) -> Any:
    """The decoder cache reordered so that beam j of example b holds beam index[b, j]'s.

    Cache leaves are [B * k, ...] (k = beam_size, example-major), index is [B, k].
    """

    # The scalar positions are shared by all beams. The cross-attention keys/values are
    # gathered too: they are equal across a row's beams, so this is correct, just some extra
    # copying.
    def gather_leaf(x):
        if x.ndim == 0:
            return x
        x = _gather_beams(x.reshape((batch, beam_size) + x.shape[1:]), index)
        return x.reshape((batch * beam_size,) + x.shape[2:])

    return jax.tree.map(gather_leaf, cache)


def _best_possible_score(
    live_logp: Array, t: Array, max_len: int, length_penalty: float | Array
) -> Array:
    """Upper bound [B] on the score any live beam (log-probs live_logp [B, k]) can still reach."""
    # Log-probs only fall as beams grow, so the best live beam bounds every future score;
    # divide by the largest penalty factor still reachable (lengths t+1 .. max_len).
    factor = jnp.maximum(
        length_penalty_factor(t + 1.0, length_penalty),
        length_penalty_factor(float(max_len), length_penalty),
    )
    return jnp.max(live_logp, axis=1) / factor


def _extend_beams(
    live_seqs: Array, live_logp: Array, log_probs: Array, t: Array
) -> tuple[Array, Array, Array, Array]:
    """The best 2k one-token extensions of the k live beams at output position t.

    Args:
      live_seqs: [B, k, max_len] the live beams' tokens.
      live_logp: [B, k] their log-probabilities.
      log_probs: [B, k, V] next-token log-probabilities of each live beam.
      t: the position the new tokens are written to.

    Returns:
      (log-probability [B, 2k] best first, parent beam [B, 2k], token [B, 2k] int32,
      sequences [B, 2k, max_len] with the token written at t).
    """
    k, vocab = log_probs.shape[1], log_probs.shape[-1]
    candidates = (live_logp[:, :, None] + log_probs).reshape(live_logp.shape[0], k * vocab)
    top_logp, top_index = jax.lax.top_k(candidates, 2 * k)  # [B, 2k], best first
    parent, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
    seqs = _gather_beams(live_seqs, parent)
    seqs = jax.lax.dynamic_update_slice_in_dim(seqs, token[:, :, None], t, axis=2)
    return top_logp, parent, token, seqs


def _update_finished(
    finished: tuple[Array, Array, Array],
    seqs: Array,
    top_logp: Array,
    token: Array,
    t: Array,
    eos_id: int,
    max_len: int,
    length_penalty: float | Array,
) -> tuple[Array, Array, Array]:
    """The best k finished beams after adding the candidates that finish at position t.

    `finished` is (sequences [B, k, max_len], scores [B, k], log-probs [B, k]), sorted by
    score, best first; seqs [B, 2k, max_len], top_logp [B, 2k] and token [B, 2k] are the
    candidates of `_extend_beams`. Returns the updated `finished`.
    """
    fin_seqs, fin_scores, fin_logp = finished
    k = fin_scores.shape[1]
    # Only the first k candidates may finish (see `beam_search`).
    finishing = ((token == eos_id) | (t == max_len - 1)) & (jnp.arange(2 * k) < k)
    scores = jnp.where(
        finishing, top_logp / length_penalty_factor(t + 1.0, length_penalty), -jnp.inf
    )
    # Existing finished beams come first, so they win ties against new ones.
    fin_scores, keep = jax.lax.top_k(jnp.concatenate([fin_scores, scores], axis=1), k)
    fin_seqs = _gather_beams(jnp.concatenate([fin_seqs, seqs], axis=1), keep)
    fin_logp = _gather_beams(jnp.concatenate([fin_logp, top_logp], axis=1), keep)
    return fin_seqs, fin_scores, fin_logp


def _initial_beam_state(batch: int, k: int, max_len: int, pad: int, cache: Any) -> tuple:
    """Loop state (t, live seqs, live log-probs, (finished seqs, scores, log-probs), cache)."""
    neg_inf = jnp.full((batch, k), -jnp.inf, jnp.float32)
    return (
        jnp.array(0, jnp.int32),
        jnp.full((batch, k, max_len), pad, jnp.int32),
        # All beams start as the same empty prefix: keep only one alive so that the first
        # step does not fill the beam with k copies of each candidate.
        neg_inf.at[:, 0].set(0.0),
        (jnp.full((batch, k, max_len), pad, jnp.int32), neg_inf, neg_inf),
        cache,
    )


@functools.partial(jax.jit, static_argnames=_STATIC + ("beam_size",))
def beam_search(
    decoder: TextDecoder,
    params: Any,
    encoded: Array,
    encoded_mask: Array | None = None,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    beam_size: int = 4,
    length_penalty: float | Array = 0.6,
    use_cache: bool = True,
) -> tuple[Array, Array]:
    """Beam search with GNMT length normalisation.

    Each step extends the `beam_size` live beams by every token and keeps the best 2 *
    beam_size candidates by log-probability. Of those, a candidate ending in EOS (or reaching
    `max_len`) that ranks among the first `beam_size` is finished: it stops growing and is
    scored log-prob / ((5 + len) / 6) ** length_penalty, len counting EOS. The best
    `beam_size` candidates not ending in EOS stay live. (Taking 2k candidates keeps k live
    beams even when several end; admitting EOS only from the top k makes beam_size 1 with
    length_penalty 0 exactly greedy, as in Hugging Face's BeamSearchScorer.) The loop stops
    once no live beam can still beat the worst of `beam_size` finished ones.

    Args:
      decoder: the `TextDecoder` module (static).
      params: its parameters.
      encoded: [B, N, D_enc] encoder output.
      encoded_mask: optional [B, N] bool, True for valid encoder tokens.
      bos_id: token fed first.
      eos_id: token that ends a sequence.
      max_len: number of output positions (static).
      beam_size: number of beams k (static).
      length_penalty: alpha; 0 ranks by plain log-probability, larger favours longer outputs.
      use_cache: key/value cache (True) or full re-run per step (False) (static).

    Returns:
      (tokens [B, max_len] int32 of the best-scoring finished beam, padding after EOS; its
      log-probability [B] float32, without the length penalty).
    """
    _check(decoder, max_len)
    batch, k = encoded.shape[0], beam_size
    # Beams are folded into the batch as [B * k], example-major, so reshapes to [B, k] agree.
    flat_encoded = jnp.repeat(encoded, k, axis=0)
    flat_mask = None if encoded_mask is None else jnp.repeat(encoded_mask, k, axis=0)
    cache = init_cache(decoder, params, flat_encoded, flat_mask, max_len) if use_cache else None

    def cond(state):
        t, _, live_logp, (_, fin_scores, _), _ = state
        best = _best_possible_score(live_logp, t, max_len, length_penalty)
        return (t < max_len) & jnp.any(best > jnp.min(fin_scores, axis=1))

    def body(state):
        t, live_seqs, live_logp, finished, cache = state
        flat_seqs = live_seqs.reshape(batch * k, max_len)
        logits, cache = _next_logits(
            decoder, params, flat_encoded, flat_mask, bos_id, flat_seqs, t, cache
        )
        log_probs = _log_probs(logits, decoder.pad_id).reshape(batch, k, -1)
        top_logp, parent, token, seqs = _extend_beams(live_seqs, live_logp, log_probs, t)
        finished = _update_finished(
            finished, seqs, top_logp, token, t, eos_id, max_len, length_penalty
        )
        live_logp, keep = jax.lax.top_k(jnp.where(token == eos_id, -jnp.inf, top_logp), k)
        live_seqs = _gather_beams(seqs, keep)
        if cache is not None:
            cache = _gather_cache(cache, _gather_beams(parent, keep), batch, k)
        return t + 1, live_seqs, live_logp, finished, cache

    state = _initial_beam_state(batch, k, max_len, decoder.pad_id, cache)
    _, _, _, (fin_seqs, _, fin_logp), _ = jax.lax.while_loop(cond, body, state)
    # top_k keeps the finished beams sorted by score, best first.
    return fin_seqs[:, 0], fin_logp[:, 0]


__all__ = ["beam_search", "greedy", "length_penalty_factor", "sample"]

"""The captioner's decoding self-attention: one new token against the key/value cache.

At each generated token a decoder block's self-attention takes one query [B, 1, H, Dh] and the
cache of capacity C [B, C, H, Dh], masked to the positions already written (`MultiHeadAttention`
with `decode=True` calls `scaled_dot_product_attention` so). Timed: ours (that call), the same
through `jax.nn.dot_product_attention` and as naive einsums, and, for what the cache saves,
the causal self-attention over the whole prefix that decoding without a cache recomputes at
every token (t queries against t keys). The cache is half full (t = C / 2). Forward only (no
gradients when decoding), jit-compiled, float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments.benchmarks.attention import _repeated, naive_attention
from experiments.benchmarks.timing import interleaved_medians
from mmjax.models.attention import scaled_dot_product_attention

# The default captioner's decoding: 50 images a batch, width 128 in 4 heads, captions of up to
# 64 tokens; and a cache 4x longer.
CASES = {"default": (50, 64, 4, 32), "cache_4x": (50, 256, 4, 32)}


def _inputs(batch: int, capacity: int, heads: int, dim: int):
    keys = jax.random.split(jax.random.key(capacity), 3)
    query = jax.random.normal(keys[0], (batch, 1, heads, dim))
    cache_k, cache_v = (jax.random.normal(k, (batch, capacity, heads, dim)) for k in keys[1:])
    written = capacity // 2
    mask = jnp.broadcast_to(jnp.arange(capacity) < written, (batch, 1, 1, capacity))
    return query, cache_k, cache_v, mask, written


def measure(name: str, reps: int, rep_seconds: float = 0.1) -> dict:
    """One `cached_attention` line: ms per decoded token of each way, timed in turns."""
    batch, capacity, heads, dim = CASES[name]
    query, cache_k, cache_v, mask, written = _inputs(batch, capacity, heads, dim)
    prefix = tuple(x[:, :written] for x in (cache_k, cache_k, cache_v))
    causal = jnp.tril(jnp.ones((written, written), bool))[None, None]
    functions = {
        "ours": (lambda q, k, v, m: scaled_dot_product_attention(q, k, v, mask=m)),
        "jax_nn": (lambda q, k, v, m: jax.nn.dot_product_attention(q, k, v, mask=m)),
        "einsum": naive_attention,
        "uncached": (lambda q, k, v, m: scaled_dot_product_attention(q, k, v, mask=m)),
    }
    arguments = {key: (query, cache_k, cache_v, mask) for key in functions}
    arguments["uncached"] = (*prefix, causal)
    candidates, calls = {}, {}
    for key, fn in functions.items():
        candidates[key], calls[key] = _repeated(jax.jit(fn), arguments[key], rep_seconds)
    seconds = interleaved_medians(candidates, reps, warmup=0)
    ms = {key: 1e3 * seconds[key] / calls[key] for key in candidates}
    return {
        "section": "cached_attention",
        "case": name,
        "shape": f"B={batch} C={capacity} t={written} H={heads} Dh={dim}",
        "ours_ms": ms["ours"],
        "jax_nn_ms": ms["jax_nn"],
        "einsum_ms": ms["einsum"],
        "uncached_ms": ms["uncached"],
        "speed_vs_jax_nn": ms["jax_nn"] / ms["ours"],
        "speed_vs_uncached": ms["uncached"] / ms["ours"],
    }

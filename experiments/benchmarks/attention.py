"""Our `scaled_dot_product_attention` against `jax.nn.dot_product_attention` and naive einsums.

All three compute softmax(Q K^T / sqrt(Dh)) V on [B, L, H, Dh] inputs (float32), without a
mask and with a key-padding mask (the last quarter of the keys padded, as the text encoders
see), forward and forward+backward (gradients of all three inputs), each jit-compiled.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp

from experiments.benchmarks.timing import interleaved_medians
from mmjax.models.attention import padding_mask, scaled_dot_product_attention


def naive_attention(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(Dh), masked) V written out: [B, L, H, Dh] -> [B, L, H, Dh]."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)


IMPLEMENTATIONS = {
    "ours": scaled_dot_product_attention,
    "jax_nn": lambda q, k, v, mask=None: jax.nn.dot_product_attention(q, k, v, mask=mask),
    "einsum": naive_attention,
}


def _forward_backward(fn):
    def loss(q, k, v, mask):
        return jnp.sum(fn(q, k, v, mask=mask))

    grad = jax.grad(loss, argnums=(0, 1, 2))
    return lambda q, k, v, mask: grad(q, k, v, mask)


def _repeated(fn, args, seconds: float = 0.1):
    """fn(*args) called enough times per repetition to last about `seconds`, then waited for."""
    jax.block_until_ready(fn(*args))  # compile
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    calls = max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))

    def run():
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)

    return run, calls


def measure(
    seq_len: int,
    masked: bool,
    backward: bool,
    reps: int,
    rep_seconds: float = 0.1,
    batch=8,
    heads=4,
    dim=16,
):
    """One `attention` line: milliseconds per call of each implementation, timed in turns.

    Each of `reps` repetitions calls an implementation for about `rep_seconds`. The default
    [B, H, Dh] = [8, 4, 16] are the heads of the default VQA model (width 64).
    """
    keys = jax.random.split(jax.random.key(seq_len), 3)
    q, k, v = (jax.random.normal(key, (batch, seq_len, heads, dim), jnp.float32) for key in keys)
    mask = None
    if masked:
        valid = jnp.arange(seq_len) < seq_len - seq_len // 4
        mask = padding_mask(jnp.broadcast_to(valid, (batch, seq_len)))  # [B, 1, 1, L]
    candidates, calls = {}, {}
    for name, fn in IMPLEMENTATIONS.items():
        fn = jax.jit(_forward_backward(fn) if backward else fn)
        candidates[name], calls[name] = _repeated(fn, (q, k, v, mask), rep_seconds)
    seconds = interleaved_medians(candidates, reps, warmup=0)
    ms = {name: 1e3 * seconds[name] / calls[name] for name in candidates}
    return {
        "section": "attention",
        "pass": "forward+backward" if backward else "forward",
        "mask": "key padding" if masked else "none",
        "seq_len": seq_len,
        "shape": f"[{batch}, {seq_len}, {heads}, {dim}]",
        "ours_ms": ms["ours"],
        "jax_nn_ms": ms["jax_nn"],
        "einsum_ms": ms["einsum"],
        "speed_vs_jax_nn": ms["jax_nn"] / ms["ours"],
    }

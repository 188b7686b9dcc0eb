"""Greedy captioning speed with the key/value cache vs re-running the whole prefix.

Builds a randomly initialised `TextDecoder` (width 256, depth 4, 4 heads, vocabulary 1000) over
a batch of 32 encoder outputs of 49 tokens (a 7x7 image grid), compiles `decoding.greedy` both
ways, and prints one JSON line with the median tokens/s over several timed repetitions and the
ratio. EOS is set to an id that never occurs, so every repetition generates all `--len` tokens
per caption (random weights would otherwise stop at arbitrary points); both ways produce the
same tokens, which is checked.

  python -m experiments.probes.decode_speed [--len=32] [--batch=32] [--reps=5]
"""

import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.models import decoding
from mmjax.models.decoder import TextDecoder


def _flag(name: str, default: int) -> int:
    return int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith(f"--{name}=")), default))


def main():
    """Prints {"cached_tokens_per_s": ..., "uncached_tokens_per_s": ..., "speedup": ...}."""
    length, batch, reps = _flag("len", 32), _flag("batch", 32), _flag("reps", 5)
    width, depth, heads, vocab, enc_len = 256, 4, 4, 1000, 49
    decoder = TextDecoder(
        vocab_size=vocab,
        max_len=length,
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=4 * width,
    )
    rng = np.random.default_rng(0)
    encoded = jnp.asarray(rng.normal(size=(batch, enc_len, width)), jnp.float32)
    tokens = jnp.ones((batch, length), jnp.int32)
    params = jax.jit(decoder.init)(jax.random.key(0), tokens, encoded)["params"]

    result = {
        "device": jax.devices()[0].device_kind,
        "batch": batch,
        "caption_len": length,
        "width": width,
        "depth": depth,
        "heads": heads,
        "vocab": vocab,
        "encoder_len": enc_len,
        "reps": reps,
    }
    outputs = {}
    for use_cache in (True, False):

        def run(use_cache=use_cache):
            out = decoding.greedy(
                decoder,
                params,
                encoded,
                None,
                bos_id=1,
                eos_id=-1,
                max_len=length,
                use_cache=use_cache,
            )
            return jax.block_until_ready(out)

        start = time.perf_counter()
        outputs[use_cache] = run()  # compile + first run
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        name = "cached" if use_cache else "uncached"
        median = statistics.median(times)
        result[f"{name}_tokens_per_s"] = round(batch * length / median, 1)
        result[f"{name}_median_s"] = round(median, 4)
        result[f"{name}_first_call_s"] = round(compile_s, 2)
    result["speedup"] = round(result["cached_tokens_per_s"] / result["uncached_tokens_per_s"], 2)
    result["same_tokens"] = bool(np.array_equal(outputs[True][0], outputs[False][0]))
    print(json.dumps(result))


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # the flags are read by hand: say them
        print(__doc__)
        sys.exit(0)
    main()

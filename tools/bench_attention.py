"""Timing of the CPU attention on the Gemma 4 12B shapes (unigemma._core.attention).

  full layer:    16 query heads, 8 KV heads, head_dim 512, causal over every cached key
  sliding layer: 16 query heads, 8 KV heads, head_dim 256, window 1024

For each: decode (1 query at the last position, n_ctx keys cached) and one prefill query
block (the last --block queries, the most expensive block of a prefill of n_ctx tokens).
Decode bandwidth = K + V bytes of the visible keys / time (what one query must read).

    PYTHONPATH=... python tools/bench_attention.py [--ctx 32768] [--block 64] [-t 2] [--kv f16]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from unigemma import _core

ROW_BYTES = {"f32": lambda d: 4 * d, "f16": lambda d: 2 * d, "q8_0": lambda d: d // 32 * 34,
             "q4_0": lambda d: d // 32 * 18}


def fill(cache, n_kv, hd, n_pos, rng, first=0, chunk=2048):
    # random K/V; one chunk of data reused for every chunk (timings do not depend on values)
    k = rng.standard_normal((chunk, n_kv, hd), dtype=np.float32)
    v = rng.standard_normal((chunk, n_kv, hd), dtype=np.float32)
    for p in range(first, n_pos, chunk):
        n = min(chunk, n_pos - p)
        cache.store(p, k[:n], v[:n])


def timeit(fn, min_s=0.5, max_reps=50):
    fn()  # warm-up (first touch, scratch growth)
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_s or reps >= max_reps:
            return dt / reps


def bench_layer(name, hd, sliding, window, args, rng):
    n_head, n_kv, ctx = 16, 8, args.ctx
    cache = _core.attention.KVCache(n_kv, hd, args.kv, args.kv, sliding=sliding, window=window,
                                    n_ctx=ctx, n_ubatch=max(512, args.block))
    first = max(0, ctx - window - args.block - 64) if sliding else 0  # a ring only keeps the recent keys
    fill(cache, n_kv, hd, ctx, rng, first=first)
    q1 = rng.standard_normal((1, n_head, hd), dtype=np.float32)
    qb = rng.standard_normal((args.block, n_head, hd), dtype=np.float32)
    t = args.threads
    dec = timeit(lambda: cache.attention(q1, ctx - 1, n_threads=t))
    pre = timeit(lambda: cache.attention(qb, ctx - args.block, n_threads=t), min_s=0.3, max_reps=5)
    keys = min(ctx, window) if sliding else ctx
    kv_bytes = keys * n_kv * (ROW_BYTES[args.kv](hd) + ROW_BYTES[args.kv](hd))
    return {
        "layer": name, "head_dim": hd, "keys_per_query": keys, "kv": args.kv, "threads": t,
        "decode_ms": round(dec * 1e3, 3), "decode_GBps": round(kv_bytes / dec / 1e9, 2),
        "prefill_block": args.block, "prefill_block_ms": round(pre * 1e3, 2),
        "prefill_us_per_query": round(pre / args.block * 1e6, 1),
        # score + P.V multiply-adds of the block (2 flops each)
        "prefill_GFLOPs": round(4.0 * args.block * n_head * keys * hd / pre / 1e9, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ctx", type=int, default=32768)
    ap.add_argument("--block", type=int, default=64, help="prefill queries per timed block")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--kv", default="f16", choices=sorted(ROW_BYTES))
    ap.add_argument("--only", choices=["full", "sliding"], default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    if args.only != "sliding":
        print(json.dumps(bench_layer("full", 512, False, 0, args, rng)), flush=True)
    if args.only != "full":
        print(json.dumps(bench_layer("sliding", 256, True, 1024, args, rng)), flush=True)


if __name__ == "__main__":
    main()

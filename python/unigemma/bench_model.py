"""`unigemma bench model MODEL`: prefill and decode speed of a text model on the CPU.

Per repetition: a fresh context, a prefill of `-p` random token ids (one eval call, timed),
then `-n` decode steps of one token each (greedy on the returned logits, timed). Reports the
median and the spread over `-r` repetitions (after one untimed warm-up run), time to first
token (= prefill time), the KV cache bytes, the weight bytes and the decode bandwidth use
(weight bytes + KV bytes read per token) / decode time per token. llama.cpp's `llama-bench
-p P -n N` measures the same two numbers (its decode also starts from an empty cache)."""
from __future__ import annotations

import json
import statistics
import sys
import time


def add_parser(bsub) -> None:
    m = bsub.add_parser("model", help="prefill / decode tokens per second of a GGUF text model")
    m.add_argument("model", help="GGUF file (gemma4 or gemma3)")
    m.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens (default 512)")
    m.add_argument("-n", "--n-gen", type=int, default=128, help="generated tokens (default 128)")
    m.add_argument("-t", "--threads", type=int, default=0, help="threads (0 = all)")
    m.add_argument("-r", "--reps", type=int, default=3, help="repetitions (default 3)")
    m.add_argument("--kv", default="f16", help="KV cache type (f16, f32, q8_0, q4_0)")
    m.add_argument("--precision", default="q8", choices=("q8", "q16"), help="activation precision")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(fn=run_cli)


def run(path: str, n_prompt: int = 512, n_gen: int = 128, threads: int = 0, reps: int = 3, kv: str = "f16",
        precision: str = "q8", log=None) -> dict:
    import numpy as np

    from . import _core as core

    if n_prompt < 1 or n_gen < 0 or reps < 1:
        raise ValueError("[bench] need -p >= 1, -n >= 0, -r >= 1")
    log = log or (lambda s: None)
    model = core.TextModel(path)
    n_ctx = n_prompt + n_gen + 1
    rng = np.random.default_rng(0)
    pre, dec = [], []
    kv_bytes = 0
    for r in range(reps + 1):
        ctx = core.Context(model, n_ctx=n_ctx, n_threads=threads, k_type=kv, v_type=kv, act_precision=precision)
        ids = rng.integers(1000, model.n_vocab - 1000, size=n_prompt).astype(np.int32)
        t0 = time.perf_counter()
        logits = ctx.eval(ids)
        t1 = time.perf_counter()
        for _ in range(n_gen):
            logits = ctx.eval(np.array([int(np.argmax(logits[0]))], np.int32))
        t2 = time.perf_counter()
        kv_bytes = ctx.kv_bytes
        if r == 0:
            continue  # warm-up: page in the weights, grow the pool
        pre.append(n_prompt / (t1 - t0))
        if n_gen:
            dec.append(n_gen / (t2 - t1))
        log(f"  rep {r}: prefill {pre[-1]:.1f} tok/s" + (f", decode {dec[-1]:.1f} tok/s" if n_gen else ""))
    weights = model.weight_bytes
    out = {
        "model": path, "n_prompt": n_prompt, "n_gen": n_gen, "threads": threads or core.get_threads(),
        "reps": reps, "kv_type": kv, "act_precision": precision,
        "prefill_tps": statistics.median(pre), "prefill_tps_all": pre,
        "decode_tps": statistics.median(dec) if dec else None, "decode_tps_all": dec,
        "ttft_s": n_prompt / statistics.median(pre), "weight_bytes": weights, "kv_bytes": kv_bytes,
    }
    if dec:
        # bytes read per decoded token: every weight once + the KV cache in use (upper bound)
        out["decode_gbs"] = (weights + kv_bytes) * out["decode_tps"] / 1e9
    return out


def run_cli(args) -> int:
    res = run(args.model, args.n_prompt, args.n_gen, args.threads, args.reps, args.kv, args.precision,
              log=lambda s: print(s, file=sys.stderr))
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['model']}: prefill {res['n_prompt']} tokens {res['prefill_tps']:.1f} tok/s "
              f"(runs {', '.join(f'{v:.1f}' for v in res['prefill_tps_all'])}); decode {res['n_gen']} tokens "
              f"{res['decode_tps'] or 0:.2f} tok/s (runs {', '.join(f'{v:.2f}' for v in res['decode_tps_all'])}); "
              f"{res['threads']} threads, KV {res['kv_type']}, act {res['act_precision']}")
    return 0

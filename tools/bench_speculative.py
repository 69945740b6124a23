"""Mechanism benchmark of speculative decoding on a (random-weight) target, issue 6:

  (a) verify cost: one target pass over k+1 tokens relative to one decode step, k = 1..8
  (b) draft step vs target step (with --draft: the real drafter's step time)
  (c) end-to-end greedy tokens/s with an oracle drafter that proposes the target's own greedy
      tokens at acceptance 1.0 / 0.8 / 0.5 (random weights cannot agree with a real drafter,
      so this measures the mechanism), against plain decoding of the same tokens.

    python tools/bench_speculative.py g4-12b-6l-q4_0.gguf [--draft g4-12b-assistant.gguf] \
        [-p 128] [-n 64] [-t 2] [-r 3] [--json]

Each number is the median of -r repetitions (first run discarded as warm-up). The oracle's own
cost is excluded (it returns a precomputed row); with --draft, (c) is also reported with the
real drafter's step time added per drafted token (measured in (b)).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def median_time(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--draft", help="drafter GGUF (for (b))")
    ap.add_argument("-p", "--n-prompt", type=int, default=128)
    ap.add_argument("-n", "--n-gen", type=int, default=64)
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("--kv", default="f16")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    import unigemma
    from unigemma.speculative import OracleDrafter

    m = unigemma.Model(a.model, n_ctx=a.n_prompt + a.n_gen + 16, n_threads=a.threads, kv_type=a.kv,
                       draft=a.draft)
    drafter = m.drafter
    m.set_drafter(None)
    rng = np.random.default_rng(0)
    prompt = [2] + rng.integers(1000, 100000, size=a.n_prompt - 1).tolist()
    out: dict = {"model": a.model, "threads": a.threads, "n_prompt": a.n_prompt, "n_gen": a.n_gen, "kv": a.kv}
    log = (lambda s: None) if a.json else (lambda s: print(s, file=sys.stderr))

    # (a) verify cost at context n_prompt
    ctx = m._ctx
    m.reset()
    ctx.eval(np.asarray(prompt, np.int32))
    base = ctx.n_past

    def step(n):
        def f():
            ctx.eval(rng.integers(1000, 100000, size=n).astype(np.int32), all_logits=n > 1)
            ctx.truncate(base)
        return f

    t1 = median_time(step(1), a.reps)
    verify = {}
    for k in range(1, 9):
        verify[k] = median_time(step(k + 1), a.reps)
        log(f"(a) verify k={k} ({k + 1} tokens): {verify[k] * 1e3:.1f} ms = {verify[k] / t1:.2f} x one decode step "
            f"({t1 * 1e3:.1f} ms)")
    out["decode_step_s"] = t1
    out["verify_s"] = verify
    out["verify_rel"] = {k: v / t1 for k, v in verify.items()}

    # (b) draft step
    if drafter is not None:
        ctx.eval(np.asarray([5], np.int32))
        h = ctx.last_hidden[-1].copy()
        pos = ctx.n_past

        def dstep():
            drafter.step(ctx, 7, pos, h)
        td = median_time(dstep, max(a.reps, 5))
        out["draft_step_s"] = td
        out["draft_rel"] = td / t1
        log(f"(b) draft step {td * 1e3:.1f} ms = {td / t1:.3f} x one target decode step")

    # (c) end-to-end with the oracle drafter
    m.reset()
    plain = m.generate(prompt, max_tokens=a.n_gen, stop_tokens=[])
    res = {}

    def run_plain():
        m.reset()
        r = m.generate(prompt, max_tokens=a.n_gen, stop_tokens=[])
        res["plain"] = r.stats

    median_time(run_plain, a.reps)
    tps_plain = res["plain"]["decode_tps"]
    out["plain_decode_tps"] = tps_plain
    log(f"(c) plain greedy decode: {tps_plain:.2f} tok/s")
    out["oracle"] = {}
    for rate in (1.0, 0.8, 0.5):
        for k in (2, 4, 8, "auto"):
            stats = []

            def run_spec():
                m.set_drafter(OracleDrafter(plain.tokens, len(prompt), m.n_vocab, m.hparams["n_embd"],
                                            accept_rate=rate, seed=len(stats)), draft_tokens=k)
                m.reset()
                r = m.generate(prompt, max_tokens=a.n_gen, stop_tokens=[])
                stats.append(r.stats)
            median_time(run_spec, a.reps)
            s = stats[len(stats) // 2]
            tps = s["generated_tokens"] / (s["decode_s"] - s["draft_seconds"]) if s["decode_s"] > s["draft_seconds"] \
                else s["decode_tps"]
            entry = {"decode_tps": tps, "speedup": tps / tps_plain, "acceptance": s["acceptance_rate"],
                     "tokens_per_target_pass": s["tokens_per_target_pass"]}
            if drafter is not None:
                t_real = s["decode_s"] - s["draft_seconds"] + s["drafted"] * out["draft_step_s"]
                entry["decode_tps_with_real_draft_cost"] = s["generated_tokens"] / t_real
                entry["speedup_with_real_draft_cost"] = entry["decode_tps_with_real_draft_cost"] / tps_plain
            out["oracle"][f"{rate}/{k}"] = entry
            log(f"(c) oracle rate {rate} k={k}: {tps:.2f} tok/s = {tps / tps_plain:.2f}x plain, acceptance "
                f"{s['acceptance_rate']:.2f}, {s['tokens_per_target_pass']:.2f} tokens/pass"
                + (f", with real draft cost {entry['speedup_with_real_draft_cost']:.2f}x" if drafter is not None else ""))
    m.set_drafter(None)
    if a.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

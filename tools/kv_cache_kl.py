"""Quality cost of a quantized KV cache: KL divergence of the next-token distributions with
K/V stored as q8_0 / q4_0 against the same model with an F16 cache (the reference
llama.cpp's `llama-perplexity --kl-divergence` also uses), teacher-forced over a text.

    python tools/kv_cache_kl.py MODEL.gguf [--text FILE ...] [--tokens 2048] [--ubatch 256]
        [--pairs f32/f32,f16/q8_0,q8_0/q8_0,q8_0/q4_0,q4_0/q4_0] [--precision q8|q16] [--json OUT]

Every position's logits come from one teacher-forced pass (all_logits, --ubatch tokens per
call, the reference and the tested cache side by side), so position t's distribution has seen
t earlier tokens through the cache type under test. Reported per K/V pair: mean and 99th-percentile KL(p_f16 || p_quant) in nats,
top-1 agreement with the F16 run, and the cache bytes at the full --tokens context. Later
positions read more quantized keys; the mean over the second half is given too. The f32/f32
row is the noise floor: an F32 cache differs from F16 only by rounding K/V to fp16, and with
8-bit activations (--precision q8, llama.cpp's arithmetic) any such change can flip int8
roundings downstream; --precision q16 lowers that floor.
Default text: the repository's Markdown documentation (README.md, BENCHMARKS.md, docs/).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)  # [positions, vocabulary]
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def kl_per_position(core, model, ids: np.ndarray, k: str, v: str, ubatch: int, precision: str):
    """(KL(p_f16 || p_kv) per position, top-1 agreement per position): the reference and the
    tested context advance together one micro-batch at a time (the logits of 2K positions x
    262144 vocabulary would not fit in memory at once)."""
    ref = core.Context(model, n_ctx=len(ids), n_ubatch=ubatch, k_type="f16", v_type="f16", act_precision=precision)
    tst = core.Context(model, n_ctx=len(ids), n_ubatch=ubatch, k_type=k, v_type=v, act_precision=precision)
    kls, agree = [], []
    for s in range(0, len(ids), ubatch):
        chunk = ids[s:s + ubatch]
        lr = log_softmax(ref.eval(chunk, all_logits=True))
        lq = log_softmax(tst.eval(chunk, all_logits=True))
        kls.append((np.exp(lr) * (lr - lq)).sum(-1))
        agree.append(lr.argmax(-1) == lq.argmax(-1))
    return np.concatenate(kls), np.concatenate(agree)


def main(argv=None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--text", nargs="*", default=None, help="text files (default: the repo's Markdown docs)")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--ubatch", type=int, default=256)
    ap.add_argument("--pairs", default="f32/f32,f16/q8_0,q8_0/q8_0,q8_0/q4_0,q4_0/q4_0")
    ap.add_argument("--precision", default="q8", choices=("q8", "q16"),
                    help="activation precision of both runs (q16: ~15-bit activations, a lower noise floor)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    import unigemma
    from unigemma import _core as core

    files = [Path(p) for p in a.text] if a.text else sorted([root / "README.md", root / "BENCHMARKS.md",
                                                              *(root / "docs").glob("*.md")])
    text = "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files if p.is_file())
    m = unigemma.Model(a.model, n_ctx=16)
    ids = np.array(m.tokenize(text)[: a.tokens], np.int32)
    if len(ids) < a.tokens:
        print(f"[kv_cache_kl] the text has only {len(ids)} tokens", file=sys.stderr)
    model = m.text_model
    half = len(ids) // 2
    out = {"model": a.model, "tokens": int(len(ids)), "reference": "f16/f16", "precision": a.precision, "pairs": {}}
    print(f"{a.model}: {len(ids)} tokens of text, teacher-forced, act {a.precision}; KL(p_f16 || p_kv) in nats")
    print(f"{'K/V':>10}  {'mean KL':>10}  {'p99 KL':>10}  {'mean KL 2nd half':>16}  {'top-1 = f16':>11}  {'cache MiB':>9}")
    for pair in a.pairs.split(","):
        k, v = pair.split("/")
        kl, same = kl_per_position(core, model, ids, k, v, a.ubatch, a.precision)
        agree = float(same.mean())
        mib = model.kv_cache_bytes(len(ids), k_type=k, v_type=v) / 2**20
        r = {"mean_kl": float(kl.mean()), "p99_kl": float(np.quantile(kl, 0.99)),
             "mean_kl_second_half": float(kl[half:].mean()), "top1_agreement": agree, "cache_mib": mib}
        out["pairs"][pair] = r
        print(f"{pair:>10}  {r['mean_kl']:10.2e}  {r['p99_kl']:10.2e}  {r['mean_kl_second_half']:16.2e}  "
              f"{agree:11.4f}  {mib:9.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Quality cost of a quantized KV cache: KL divergence of the next-token distributions with
K/V stored as q8_0 / q4_0 against the same model with an F16 cache (the reference
llama.cpp's `llama-perplexity --kl-divergence` also uses), teacher-forced over a text.

    python tools/kv_cache_kl.py MODEL.gguf [--text FILE ...] [--tokens 2048] [--ubatch 512]
        [--pairs f16/q8_0,q8_0/q8_0,q8_0/q4_0,q4_0/q4_0] [--json OUT]

Every position's logits come from one teacher-forced pass (all_logits, micro-batches of
--ubatch), so position t's distribution has seen t earlier tokens through the cache type
under test. Reported per K/V pair: mean and 99th-percentile KL(p_f16 || p_quant) in nats,
top-1 agreement with the F16 run, and the cache bytes at the full --tokens context. Later
positions read more quantized keys; the mean over the second half is given too.
Default text: the repository's Markdown documentation (README.md, BENCHMARKS.md, docs/).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def logits_for(core, model, ids: np.ndarray, k: str, v: str, ubatch: int) -> np.ndarray:
    ctx = core.Context(model, n_ctx=len(ids), n_ubatch=ubatch, k_type=k, v_type=v)
    return ctx.eval(ids, all_logits=True)


def main(argv=None) -> int:
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--text", nargs="*", default=None, help="text files (default: the repo's Markdown docs)")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--ubatch", type=int, default=512)
    ap.add_argument("--pairs", default="f16/q8_0,q8_0/q8_0,q8_0/q4_0,q4_0/q4_0")
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
    ref = log_softmax(logits_for(core, model, ids, "f16", "f16", a.ubatch))
    p_ref = np.exp(ref)
    half = len(ids) // 2
    out = {"model": a.model, "tokens": int(len(ids)), "reference": "f16/f16", "pairs": {}}
    print(f"{a.model}: {len(ids)} tokens of text, teacher-forced; KL(p_f16 || p_quant) in nats")
    print(f"{'K/V':>10}  {'mean KL':>10}  {'p99 KL':>10}  {'mean KL 2nd half':>16}  {'top-1 = f16':>11}  {'cache MiB':>9}")
    for pair in a.pairs.split(","):
        k, v = pair.split("/")
        lq = log_softmax(logits_for(core, model, ids, k, v, a.ubatch))
        kl = (p_ref * (ref - lq)).sum(-1)
        agree = float((lq.argmax(-1) == ref.argmax(-1)).mean())
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

"""Real weights: the Gemma 3 270M Q4_K_M GGUF, teacher-forced over 1,100 tokens of natural
English text, against transformers running the same GGUF dequantized to float32
(`from_pretrained(..., gguf_file=...)`).

Measured (this machine, 2026-11-22): act_precision "q8" (8-bit activations in quantized
matmuls, what llama.cpp does) gives top-1 96.6% / mean KL 0.0063 — llama.cpp itself gives
96.5% / 0.0062 on the same tokens; "q16" (8-bit + 8-bit residual) gives 100% / 1e-7 with an
F32 cache and 99.9% / 6e-7 with the default F16 cache. The issue's bound (top-1 >= 98%,
mean KL <= 0.02) is asserted for q16; q8 is held to llama.cpp's level.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

import unigemma
from unigemma import _core as core

# transformers runs the real Gemma 3 270M over 1,100 tokens: minutes
pytestmark = pytest.mark.slow

N_TOKENS = 1100


@pytest.fixture(scope="module")
def data(gemma3_hf_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(unigemma.default_model_path())
    tok = gemma3_hf_tokenizer
    # Natural text that every CPython carries: module documentation prose.
    text = "\n\n".join(m.__doc__ for m in (argparse, subprocess, json, textwrap))
    ids = tok(text, return_tensors="np")["input_ids"][0][:N_TOKENS].astype(np.int32)
    assert len(ids) == N_TOKENS and ids[0] == 2
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids[None].astype(np.int64))).logits[0].float().numpy()
    return path, ids, ref


def compare(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    def logsm(x):
        x = x.astype(np.float64)
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))

    kl = 0.0
    for a in range(0, len(ref), 64):  # 64-row chunks: the float64 temporaries stay in cache
        lp, lq = logsm(ref[a:a + 64]), logsm(ours[a:a + 64])
        kl += float((np.exp(lp) * (lp - lq)).sum())
    return float((ours.argmax(1) == ref.argmax(1)).mean()), kl / len(ref)


@pytest.mark.parametrize("precision,kv,min_top1,max_kl", [
    ("q16", "f16", 0.98, 0.02),   # the bound, default cache type
    ("q8", "f16", 0.95, 0.02),    # llama.cpp-equivalent arithmetic
])
def test_teacher_forced_agreement(precision, kv, min_top1, max_kl, data, capsys):
    path, ids, ref = data
    ctx = core.Context(core.TextModel(str(path)), n_ctx=2048, k_type=kv, v_type=kv, act_precision=precision)
    ours = ctx.eval(ids, all_logits=True)
    top1, kl = compare(ours, ref)
    with capsys.disabled():
        print(f"\n[gemma3 270m, act {precision}, kv {kv}] top-1 {top1:.4f}, mean KL {kl:.2e} over {len(ids)} tokens")
    assert top1 >= min_top1 and kl <= max_kl

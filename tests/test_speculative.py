"""Speculative decoding (python/unigemma/speculative.py) with stand-in drafters: the loop must
be lossless whatever the drafter proposes.

* Greedy: output token-identical to plain greedy decoding (hypothesis over prompts, draft
  lengths, sliding windows, KV cache types, drafters that are always right, sometimes right or
  random).
* Sampling: the distribution of the first two generated tokens equals the target's own
  (chi-square against the exact distribution computed from the target's logits), with a
  drafter whose proposals follow a different distribution; the same test on a loop that
  accepted every draft would fail.
With the real MTP drafter: the same property, and the output equals transformers'
`generate(assistant_model=...)`. The drafter's own forward against transformers is in
test_assistant.py.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unigemma
from unigemma.convert import convert
from unigemma.speculative import OracleDrafter

WINDOW = {"default": 16, "kv_shared": 16, "alt_layout": 8, "odd_heads": 5}


@pytest.fixture(scope="module")
def gguf_of(hf_ckpt, tmp_path_factory):
    """gguf_of(name) -> target GGUF (F32); for the configs with a drafter fixture the
    drafter is converted too: PREFIX-assistant.gguf (+ its centroid side file)."""
    root = tmp_path_factory.mktemp("spec")
    cache = {}

    def get(name: str):
        if name not in cache:
            draft = hf_ckpt(f"assistant_{name}") if name in DRAFTED else None
            convert(hf_ckpt(name), outtype="f32", out_prefix=root / name, assistant_dir=draft, progress=False)
            cache[name] = str(root / f"{name}.gguf")
        return cache[name]

    return get


DRAFTED = ("default", "kv_shared", "alt_layout")


def drafter_path(target: str) -> str:
    return target[:-len(".gguf")] + "-assistant.gguf"


class RandomDrafter:
    """Proposes tokens from its own random distribution (seeded): mostly wrong, never lossy."""

    def __init__(self, n_vocab: int, hidden: int, seed: int, support: int = 50):
        self.rng = np.random.default_rng(seed)
        self.n_vocab, self.h, self.support = n_vocab, np.zeros(hidden, np.float32), support

    def step(self, ctx, token, pos, h):
        row = np.full(self.n_vocab, -30.0, np.float32)
        ids = self.rng.integers(300, 300 + self.support, size=4)
        row[ids] = self.rng.normal(0, 2, size=4).astype(np.float32)
        return row, self.h


@pytest.mark.slow  # 10 hypothesis examples, each converting and running a model: ~70 s
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(name=st.sampled_from(["default", "alt_layout", "odd_heads"]), kv=st.sampled_from(["f32", "f16", "q8_0"]),
       k=st.sampled_from([1, 2, 3, 5, 8, "auto"]), kind=st.sampled_from(["oracle", "random", "mtp"]),
       rate=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1), n_prompt=st.integers(3, 40))
def test_greedy_output_is_unchanged_by_drafting(gguf_of, name, kv, k, kind, rate, seed, n_prompt):
    if kv == "q8_0" and name != "default":
        kv = "f16"   # head_dim 16 / 24 has no Q8_0 cache (blocks of 32)
    m = unigemma.Model(gguf_of(name), n_ctx=256, kv_type=kv)
    rng = np.random.default_rng(seed)
    prompt = [2] + rng.integers(300, 3000, size=n_prompt - 1).tolist()
    n_gen = 3 * WINDOW[name] + 5   # the rings wrap and roll back across the window
    base = m.generate(prompt, max_tokens=n_gen, stop_tokens=[])
    if kind == "mtp" and name in DRAFTED:   # the real drafter (random weights: rarely right)
        m = unigemma.Model(gguf_of(name), n_ctx=256, kv_type=kv, draft=drafter_path(gguf_of(name)), draft_tokens=k)
    elif kind == "oracle":
        m.set_drafter(OracleDrafter(base.tokens, len(prompt), m.n_vocab, m.hparams["n_embd"], accept_rate=rate,
                                    seed=seed), draft_tokens=k)
    else:
        m.set_drafter(RandomDrafter(m.n_vocab, m.hparams["n_embd"], seed), draft_tokens=k)
    m.reset()
    r = m.generate(prompt, max_tokens=n_gen, stop_tokens=[])
    assert r.tokens == base.tokens
    s = r.stats
    assert s["drafted"] >= s["accepted"] >= 0 and s["tokens_per_target_pass"] >= 1.0
    # the cache holds what it says it holds: a second, shorter prompt reuses a prefix correctly
    again = m.generate(prompt, max_tokens=5, stop_tokens=[])
    assert again.tokens == base.tokens[:5]


def test_stats_streaming_and_stop_mid_round(gguf_of):
    m = unigemma.Model(gguf_of("default"), n_ctx=256, kv_type="f32")
    prompt = [2, 400, 500, 600]
    base = m.generate(prompt, max_tokens=40, stop_tokens=[])
    m.set_drafter(OracleDrafter(base.tokens, len(prompt), m.n_vocab, 64), draft_tokens=8)
    m.reset()
    pieces = list(m.generate(prompt, max_tokens=40, stop_tokens=[], stream=True))
    r = m.last_stats
    for key in ("drafted", "accepted", "acceptance_by_position", "tokens_per_target_pass", "draft_seconds",
                "target_seconds"):
        assert key in r
    assert r["accepted"] == r["drafted"] and r["tokens_per_target_pass"] > 4
    assert "".join(pieces) == base.text
    # max_tokens inside a round: the cache keeps only what was handed out
    m.reset()
    r = m.generate(prompt, max_tokens=3, stop_tokens=[])
    assert r.tokens == base.tokens[:3]
    assert m.cached_token_ids == prompt + base.tokens[:3][:m.cached_tokens - len(prompt)]
    assert m.cached_tokens <= len(prompt) + 3
    # a stop token that the drafter proposed and the target accepted ends the run there
    stop = base.tokens[5]
    r = m.generate(prompt, max_tokens=40, stop_tokens=[stop])
    assert r.tokens == base.tokens[:base.tokens.index(stop)] and r.stats["finish_reason"] == "stop"
    assert m.generate(prompt, max_tokens=40, stop_tokens=[]).tokens == base.tokens
    with pytest.raises(ValueError, match="draft_tokens"):
        m.generate(prompt, max_tokens=4, draft_tokens=9)


def _chi2_threshold(df: int, z: float = 4.753) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile at upper tail ~1e-6."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def _two_token_law(m, prompt, top_k, temperature):
    """Exact P(t1, t2) of the target with the sampler's filters (prompt logits, then per t1)."""
    s = unigemma._core.Sampler(m.n_vocab, temperature=temperature, top_k=top_k)
    p1 = s.probs(m.logits(prompt)[-1])
    law = {}
    for t1 in np.nonzero(p1)[0]:
        p2 = s.probs(m.logits(prompt + [int(t1)])[-1])
        for t2 in np.nonzero(p2)[0]:
            law[(int(t1), int(t2))] = float(p1[t1]) * float(p2[t2])
    return law


@pytest.mark.slow  # thousands of sampled rounds for the chi-square: 25-90 s
@pytest.mark.parametrize("accept_all", [False, True])
def test_sampling_preserves_the_target_distribution(gguf_of, accept_all, monkeypatch):
    """Chi-square of 1200 seeded runs' first two tokens against the exact law. With
    accept_all (a broken loop that keeps every draft) the test must detect the difference."""
    m = unigemma.Model(gguf_of("default"), n_ctx=64, kv_type="f32")
    prompt = [2, 700, 800, 900, 1000]
    top_k, temp = 4, 1.5
    law = _two_token_law(m, prompt, top_k, temp)

    class SkewedDrafter:
        """Proposes from a fixed skewed law over the target's likely tokens."""
        def __init__(self):
            self.h = np.zeros(64, np.float32)

        def step(self, ctx, token, pos, h):
            row = np.full(m.n_vocab, -40.0, np.float32)
            ids = sorted({t for pair in law for t in pair})
            row[ids] = np.linspace(3.0, -1.0, len(ids)).astype(np.float32)
            return row, self.h

    if accept_all:  # a broken loop: every draft accepted
        from unigemma import speculative

        monkeypatch.setattr(speculative, "accept_probability", lambda p, q: 1.0)
    m.set_drafter(SkewedDrafter(), draft_tokens=2)
    n = 300 if accept_all else 1200   # the broken loop is off by far more than the noise
    counts = Counter()
    for seed in range(n):
        r = m.generate(prompt, max_tokens=2, temperature=temp, top_k=top_k, seed=seed, stop_tokens=[])
        counts[tuple(r.tokens)] += 1
    cells = [c for c in law if law[c] * n >= 5]
    rest = 1.0 - sum(law[c] for c in cells)
    obs = [counts[c] for c in cells] + [n - sum(counts[c] for c in cells)]
    exp = [law[c] * n for c in cells] + [rest * n]
    if exp[-1] < 5:
        obs, exp = obs[:-1], exp[:-1]
    stat = sum((o - e) ** 2 / e for o, e in zip(obs, exp))
    bound = _chi2_threshold(len(obs) - 1)
    print(f"accept_all={accept_all}: chi2 {stat:.1f} (bound {bound:.1f}, {len(obs)} cells)")
    if accept_all:
        assert stat > bound
    else:
        assert stat < bound


def test_model_draft_argument_errors(gguf_of, tmp_path):
    with pytest.raises(unigemma.InputError, match="not found"):
        unigemma.Model(gguf_of("default"), draft=tmp_path / "missing.gguf")


@pytest.mark.slow  # transformers' assisted generate: 75-100 s each
@pytest.mark.parametrize("name", ["default", "kv_shared"])
def test_greedy_with_drafter_matches_transformers_assisted_generate(name, gguf_of, hf_ckpt):
    import torch
    import tiny_checkpoints as tc
    from transformers import Gemma4UnifiedAssistantForCausalLM, Gemma4UnifiedForConditionalGeneration

    path = gguf_of(name)
    m = unigemma.Model(path, n_ctx=256, kv_type="f32", draft=drafter_path(path), draft_tokens=4)
    assert m.assistant.has_centroid_head
    rng = np.random.default_rng(len(name))
    prompt = [2] + rng.integers(300, 2200, size=2 * WINDOW[name] + 3).tolist()
    n_gen = 16
    with tc.patch_transformers_assistant():
        tgt = Gemma4UnifiedForConditionalGeneration.from_pretrained(hf_ckpt(name), dtype=torch.float32).eval()
        asst = Gemma4UnifiedAssistantForCausalLM.from_pretrained(hf_ckpt(f"assistant_{name}"),
                                                                 dtype=torch.float32).eval()
        asst.generation_config.num_assistant_tokens = 4
        asst.generation_config.num_assistant_tokens_schedule = "constant"
        with torch.no_grad():
            out = tgt.generate(torch.tensor([prompt]), assistant_model=asst, max_new_tokens=n_gen, do_sample=False,
                               min_new_tokens=n_gen)
    want = out[0, len(prompt):].tolist()
    r = m.generate(prompt, max_tokens=n_gen, stop_tokens=[])
    assert r.tokens == want
    assert r.stats["drafted"] > 0


def test_drafting_with_an_image_in_a_chat_and_streaming(gguf_of):
    """A chat turn with an image (bidirectional block in the target's cache) decodes the same
    with and without the drafter, streamed or not."""
    path = gguf_of("default")
    mmproj = path[:-len(".gguf")] + "-mmproj.gguf"
    img = np.random.default_rng(3).integers(0, 256, size=(200, 300, 3), dtype=np.uint8)
    msgs = [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "What is it?"}]}]
    plain = unigemma.Model(path, mmproj=mmproj, image_tokens=70, kv_type="f32").chat(msgs, max_tokens=12,
                                                                                     stop_tokens=[])
    m = unigemma.Model(path, mmproj=mmproj, image_tokens=70, kv_type="f32", draft=drafter_path(path))
    r = m.chat(msgs, max_tokens=12, stop_tokens=[])
    assert r.tokens == plain.tokens and r.stats["drafted"] > 0
    s = m.chat(msgs, max_tokens=12, stop_tokens=[], stream=True)
    list(s)
    assert s.result.tokens == plain.tokens


@pytest.mark.slow  # CLI subprocess loading target and drafter: ~20 s
def test_cli_run_with_draft(gguf_of):
    import subprocess
    import sys

    path = gguf_of("default")
    base = [sys.executable, "-m", "unigemma", "run", path, "-p", "Hello there", "-n", "12", "--kv", "f32"]
    plain = subprocess.run(base, capture_output=True, text=True, timeout=300)
    spec = subprocess.run(base + ["--draft", drafter_path(path), "--draft-n", "3"], capture_output=True, text=True,
                          timeout=300)
    assert plain.returncode == 0 and spec.returncode == 0, spec.stderr
    assert spec.stdout == plain.stdout
    assert "drafted" in spec.stderr and "tokens/pass" in spec.stderr

"""Continuous batching in the core: `_core.decode_batch` appends one token to each of several
contexts in one forward pass. Oracle: the same contexts decoded one at a time with
`Context.eval` (itself checked against transformers in test_text_model): rows must be bitwise
equal, for every tiny Gemma 4 layout (sliding rings that wrap, KV sharing, k_eq_v, odd heads),
quantized weights, and the real Gemma 3 270M (Q4_K / Q6_K panels) with F16 and Q8_0 KV caches."""
from __future__ import annotations

import numpy as np
import pytest

import unigemma
from unigemma import ContextOverflowError, InputError
from unigemma import _core as core
from unigemma.convert import convert


@pytest.fixture(scope="module")
def gguf_of(hf_ckpt, tmp_path_factory):
    root = tmp_path_factory.mktemp("db")
    cache = {}

    def get(name: str, outtype: str):
        if (name, outtype) not in cache:
            convert(hf_ckpt(name), outtype=outtype, out_prefix=root / f"{name}-{outtype}", progress=False)
            cache[(name, outtype)] = str(root / f"{name}-{outtype}.gguf")
        return cache[(name, outtype)]
    return get


def run_both(tm, prompts, steps, seed, **ctx_kw):
    """Decode `steps` tokens for each prompt, batched and alone; returns both logit streams."""
    rng = np.random.default_rng(seed)
    n_vocab = tm.n_vocab
    batched = [core.Context(tm, **ctx_kw) for _ in prompts]
    alone = [core.Context(tm, **ctx_kw) for _ in prompts]
    for b, a, p in zip(batched, alone, prompts):
        assert np.array_equal(b.eval(p)[0], a.eval(p)[0])
    out_b, out_a = [], []
    active = list(range(len(prompts)))
    for step in range(steps):
        # sequences join and leave the batch: the batch composition changes every few steps
        if step == steps // 2 and len(active) > 2:
            active = active[1:]
        toks = rng.integers(5, min(n_vocab, 2000), size=len(active)).astype(np.int32)
        rows = core.decode_batch([batched[i] for i in active], toks)
        for j, i in enumerate(active):
            ref = alone[i].eval(np.array([toks[j]], np.int32))[0]
            out_b.append(rows[j])
            out_a.append(ref)
    return batched, alone, out_b, out_a


@pytest.mark.parametrize("name, outtype, kv", [
    ("default", "f32", "f16"), ("kv_shared", "f32", "f16"), ("alt_layout", "q8_0", "f16"),
    ("odd_heads", "f16", "f32"), ("default", "q4_k_m", "f32")])
def test_batched_rows_equal_single_decode(name, outtype, kv, gguf_of):
    tm = core.TextModel(gguf_of(name, outtype))
    rng = np.random.default_rng(7)
    prompts = [rng.integers(300, 2000, size=n).astype(np.int32) for n in (3, 21, 40)]  # windows 5..16 wrap
    b, a, ob, oa = run_both(tm, prompts, 24, seed=1, n_ctx=96, k_type=kv, v_type=kv)
    for x, y in zip(ob, oa):
        assert np.array_equal(x, y)
    assert [c.n_past for c in b] == [c.n_past for c in a]


@pytest.mark.parametrize("kv", ["f16", "q8_0"])
def test_real_gemma3_panels(kv):
    m = unigemma.Model(n_ctx=128)
    prompts = [np.array(m.tokenize(t), np.int32) for t in ("Hello there", "The capital of France is a city")]
    _, _, ob, oa = run_both(m.text_model, prompts, 6, seed=2, n_ctx=128, k_type=kv, v_type=kv)
    assert all(np.array_equal(x, y) for x, y in zip(ob, oa))


def test_errors_change_nothing(gguf_of):
    tm = core.TextModel(gguf_of("default", "f32"))
    other = core.TextModel(gguf_of("odd_heads", "f32"))
    c1, c2 = core.Context(tm, n_ctx=8), core.Context(tm, n_ctx=8)
    c1.eval(np.arange(3, 10, dtype=np.int32))
    c2.eval(np.arange(3, 6, dtype=np.int32))
    with pytest.raises(InputError, match="twice"):
        core.decode_batch([c2, c2], np.array([5, 6], np.int32))
    with pytest.raises(InputError, match="another model"):
        core.decode_batch([c2, core.Context(other, n_ctx=8)], np.array([5, 6], np.int32))
    with pytest.raises(InputError, match="vocabulary"):
        core.decode_batch([c2], np.array([tm.n_vocab], np.int32))
    with pytest.raises(InputError, match="one token per context"):
        core.decode_batch([c1, c2], np.array([5], np.int32))
    with pytest.raises(InputError, match="at least one"):
        core.decode_batch([], np.array([], np.int32))
    with pytest.raises(InputError, match="Context"):
        core.decode_batch([c1, "x"], np.array([5, 6], np.int32))
    c1.eval(np.array([4], np.int32))  # now full (8 of 8)
    with pytest.raises(ContextOverflowError, match="full"):
        core.decode_batch([c2, c1], np.array([5, 6], np.int32))
    assert (c1.n_past, c2.n_past) == (8, 3)
    ref = core.Context(tm, n_ctx=8)
    ref.eval(np.arange(3, 6, dtype=np.int32))
    assert np.array_equal(core.decode_batch([c2], np.array([9], np.int32))[0], ref.eval(np.array([9], np.int32))[0])

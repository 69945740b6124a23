"""CPU attention (unigemma._core.attention): the tiled online-softmax kernels of every ISA
path against the scalar reference and float64 NumPy, the whole attention against a plain
softmax reference (F32/F16/Q8_0/Q4_0 caches, GQA, sliding windows over the ring, key_end,
attention_range), and the batch-invariance contract: a query's output is bitwise the same
alone or in any batch, for any pos0 split and thread count.

Error bounds (eps = 2^-23):
  * row_f32: exact (F16 -> f32 exact; Q8_0/Q4_0: one float32 product d * q on every path).
  * scores: products exact in float64, summed in float32 in 8-16 lane partial sums:
        |s - ref| <= (d / 8 + 16) * eps * sum_i |q_i k_i|.
  * softmax step: p = exp(t - m) with a polynomial exp (<= 4 ulp) of an argument rounded once:
        |p - ref| <= (8 + 2 |t - m|) * eps * p; the row sum adds (nk + 16) * eps relative.
  * pv: one multiply-add per term, in order: |o - ref| <= (nk + 2) * eps * sum_j |p_j v_j| + |o| eps.
  * attention: the output is a convex combination of V rows; with |v| <= V the error is a
    few 1e-6 * V for these sizes (checked at 2e-5 * max|v|), against the reference on the
    cache's dequantized K/V.
"""
from __future__ import annotations

import numpy as np
import pytest

from unigemma import _core

A = _core.attention
ISAS = _core.kernels.available_isas()
EPS = float(np.finfo(np.float32).eps)
KV_TYPES = ["f32", "f16", "q8_0", "q4_0"]
ROW_BYTES = {"f32": lambda d: 4 * d, "f16": lambda d: 2 * d, "q8_0": lambda d: d // 32 * 34,
             "q4_0": lambda d: d // 32 * 18}


def roundtrip(x, kv_type):
    """What the cache holds for float rows x: quantize then dequantize (same code as KVLayer.store)."""
    t = kv_type.upper()
    return _core.dequantize(_core.quantize(np.ascontiguousarray(x, np.float32), t), t, x.size).reshape(x.shape)


# ------------------------------------------------------------------ kernels vs scalar / float64

@pytest.mark.parametrize("kv_type", KV_TYPES)
def test_row_f32_exact(kv_type):
    rng = np.random.default_rng(1)
    for d in (32, 64, 256, 512):
        x = (rng.standard_normal(d) * 3).astype(np.float32)
        raw = _core.quantize(x[None], kv_type.upper())
        want = _core.dequantize(raw, kv_type.upper(), d)
        for isa in ISAS + ["scalar"]:
            got = A.row_f32(isa, kv_type, raw, d)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (isa, kv_type, d)


@pytest.mark.parametrize("d", [1, 7, 16, 24, 33, 64, 256, 512])
def test_scores(d):
    rng = np.random.default_rng(d)
    for isa in ISAS + ["scalar"]:
        for nr, nk in [(1, 1), (2, 16), (5, 7), (9, 13), (32, 16)]:
            q = rng.standard_normal((nr, d)).astype(np.float32)
            k = rng.standard_normal((nk, d)).astype(np.float32)
            s = A.scores(isa, q, k)
            ref = q.astype(np.float64) @ k.astype(np.float64).T
            bound = (d / 8 + 16) * EPS * (np.abs(q).astype(np.float64) @ np.abs(k).astype(np.float64).T)
            assert np.all(np.abs(s - ref) <= bound + 1e-30), (isa, d, nr, nk)
            # a (row, key) pair's score does not depend on the tile it was computed in
            for r0, r1, c0, c1 in [(0, 1, 0, 1), (nr - 1, nr, 0, nk), (0, nr, nk - 1, nk), (nr // 2, nr, nk // 3, nk)]:
                sub = A.scores(isa, q[r0:r1], k[c0:c1])
                assert np.array_equal(sub.view(np.uint32), s[r0:r1, c0:c1].view(np.uint32)), (isa, d, r0, c0)


def softmax_ref(s, a, b, scale, m, l):
    p = np.array(s, np.float64)
    m2, l2, al = m.astype(np.float64).copy(), l.astype(np.float64).copy(), np.full(len(a), np.nan)
    for r in range(len(a)):
        if a[r] > b[r]:
            continue
        t = scale * s[r, a[r]:b[r] + 1].astype(np.float64)
        mx = max(float(m[r]), float(t.max()))
        al[r] = 0.0 if m[r] == -np.inf else np.exp(float(m[r]) - mx)
        e = np.exp(t - mx)
        p[r, a[r]:b[r] + 1] = e
        l2[r] = l[r] * al[r] + e.sum()
        m2[r] = mx
    return p, m2, l2, al


def test_softmax_step():
    rng = np.random.default_rng(7)
    for isa in ISAS + ["scalar"]:
        for bk in (16, 32, 64):
            nr = 6
            s = (rng.standard_normal((nr, bk)) * 4).astype(np.float32)
            a = np.array([0, 3, 0, 17 % bk, 5, 9], np.int64)
            b = np.array([bk - 1, 11 % bk + 3, 0, bk - 1, 4, bk - 2], np.int64)  # row 4: empty
            m = np.array([-np.inf, 1.0, 9.0, -np.inf, 2.0, 0.5], np.float32)
            l = np.array([0.0, 2.5, 1.0, 0.0, 1.0, 3.0], np.float32)
            for scale in (1.0, 0.125):
                p, m2, l2, al = A.softmax_step(isa, s, a, b, scale, m, l)
                rp, rm, rl, ral = softmax_ref(s, a, b, scale, m, l)
                for r in range(nr):
                    if a[r] > b[r]:  # untouched
                        assert np.array_equal(p[r], s[r]) and m2[r] == m[r] and l2[r] == l[r] and np.isnan(al[r])
                        continue
                    assert np.array_equal(p[r, :a[r]], s[r, :a[r]]) and np.array_equal(p[r, b[r] + 1:], s[r, b[r] + 1:])
                    seg = slice(a[r], b[r] + 1)
                    targ = np.abs(scale * s[r, seg].astype(np.float64) - rm[r])
                    assert np.all(np.abs(p[r, seg] - rp[r, seg]) <= (8 + 2 * targ) * EPS * rp[r, seg] + 1e-38), (isa, r)
                    assert m2[r] == np.float32(rm[r])
                    assert abs(al[r] - ral[r]) <= 8 * EPS * ral[r] + 1e-38
                    assert abs(l2[r] - rl[r]) <= (bk + 32) * 4 * EPS * rl[r], (isa, r, l2[r], rl[r])


@pytest.mark.parametrize("d", [8, 24, 64, 100, 512])
def test_pv(d):
    rng = np.random.default_rng(d + 1)
    for isa in ISAS + ["scalar"]:
        for nr in (1, 2, 4, 7, 32):
            bk = 32
            p = rng.random((nr, bk)).astype(np.float32)
            v = rng.standard_normal((bk, d)).astype(np.float32)
            o = rng.standard_normal((nr, d)).astype(np.float32)
            a = rng.integers(0, bk, nr)
            b = np.clip(a + rng.integers(-3, bk, nr), -1, bk - 1)  # some rows empty (b < a)
            got = A.pv(isa, a, b, p, v, o)
            for r in range(nr):
                seg = slice(a[r], b[r] + 1)
                ref = o[r].astype(np.float64) + p[r, seg].astype(np.float64) @ v[seg].astype(np.float64)
                mag = np.abs(p[r, seg]).astype(np.float64) @ np.abs(v[seg]).astype(np.float64) + np.abs(o[r])
                assert np.all(np.abs(got[r] - ref) <= (bk + 2) * EPS * mag + 1e-30), (isa, d, nr, r)
                # a row's result does not depend on the rows it was processed with
                alone = A.pv(isa, a[r:r + 1], b[r:r + 1], p[r:r + 1], v, o[r:r + 1])
                assert np.array_equal(alone[0].view(np.uint32), got[r].view(np.uint32)), (isa, d, nr, r)


# ------------------------------------------------------------------ attention vs a softmax reference

def reference(q, k, v, pos0, window, key_end, scale, lo_hi=None):
    """Plain float64 softmax attention. q [n, nh, hd]; k, v [n_pos, nkv, hd] indexed by position."""
    n, nh, hd = q.shape
    group = nh // k.shape[1]
    out = np.zeros(q.shape, np.float64)
    for t in range(n):
        pos = pos0 + t
        lo, hi = lo_hi if lo_hi else (max(0, pos - window + 1) if window else 0,
                                      key_end[t] if key_end is not None else pos)
        for h in range(nh):
            g = h // group
            s = scale * (k[lo:hi + 1, g].astype(np.float64) @ q[t, h].astype(np.float64))
            p = np.exp(s - s.max())
            out[t, h] = (p / p.sum()) @ v[lo:hi + 1, g].astype(np.float64)
    return out


def make_cache(rng, kv_type, nkv, hd, n_pos, sliding=False, window=0, n_ctx=None, n_ubatch=64):
    cache = A.KVCache(nkv, hd, kv_type, kv_type, sliding=sliding, window=window,
                      n_ctx=n_ctx or n_pos, n_ubatch=n_ubatch)
    k = rng.standard_normal((n_pos, nkv, hd)).astype(np.float32)
    v = rng.standard_normal((n_pos, nkv, hd)).astype(np.float32)
    return cache, k, v


def check(out, ref, v):
    tol = 2e-5 * float(np.abs(v).max())
    err = float(np.abs(out - ref).max())
    assert err <= tol, (err, tol)


CASES = [  # (nkv, n_head, hd)
    (2, 4, 64), (1, 3, 24), (2, 2, 32), (1, 4, 256), (2, 4, 512),
]


# quantized caches store rows of 32-element blocks: only head_dims that are multiples of 32
@pytest.mark.parametrize("kv_type,nkv,nh,hd", [(t, *c) for t in KV_TYPES for c in CASES
                                               if t not in ("q8_0", "q4_0") or c[2] % 32 == 0])
def test_attention_full(kv_type, nkv, nh, hd):
    rng = np.random.default_rng(nkv * 1000 + hd)
    n_pos = 150
    cache, k, v = make_cache(rng, kv_type, nkv, hd, n_pos)
    cache.store(0, k, v)
    kd, vd = roundtrip(k, kv_type), roundtrip(v, kv_type)
    q = (rng.standard_normal((40, nh, hd)) / np.sqrt(hd) * 3).astype(np.float32)
    for isa in ISAS + ["scalar"]:
        out = cache.attention(q, n_pos - 40, n_threads=2, isa=isa)
        check(out, reference(q, kd, vd, n_pos - 40, 0, None, 1.0), vd)
    # attention_range: one query over explicit positions, with a scale
    out = cache.attention_range(q[0], 17, 133, scale=0.5, n_threads=2)
    check(out, reference(q[:1], kd, vd, 0, 0, None, 0.5, lo_hi=(17, 133))[0], vd)


@pytest.mark.parametrize("kv_type", ["f32", "f16", "q8_0"])
def test_attention_sliding_ring_and_key_end(kv_type):
    rng = np.random.default_rng(5)
    nkv, nh, hd, window, n_ubatch = 2, 4, 64, 37, 24
    n_pos = 300  # the ring (window + n_ubatch + 64 slots) wraps around twice
    cache, k, v = make_cache(rng, kv_type, nkv, hd, n_pos, sliding=True, window=window, n_ctx=4096,
                             n_ubatch=n_ubatch)
    kd, vd = roundtrip(k, kv_type), roundtrip(v, kv_type)
    pos = 0
    for isa in ISAS + ["scalar"]:
        cache.forget_from(0)
        pos = 0
        while pos < n_pos:  # prefill in micro-batches, attention after each store
            n = min(n_ubatch, n_pos - pos)
            cache.store(pos, k[pos:pos + n], v[pos:pos + n])
            q = (rng.standard_normal((n, nh, hd)) / 4).astype(np.float32)
            # an "image block" of 6 tokens in the middle of the micro-batch sees its whole block
            key_end = np.arange(pos, pos + n, dtype=np.int64)
            if n >= 10:
                key_end[2:8] = pos + 7
            out = cache.attention(q, pos, key_end=key_end, n_threads=2, isa=isa)
            check(out, reference(q, kd, vd, pos, window, key_end, 1.0), vd)
            pos += n
    assert not cache.holds(0)  # the ring really wrapped


def test_attention_missing_position_raises():
    rng = np.random.default_rng(3)
    cache, k, v = make_cache(rng, "f16", 2, 32, 20)
    cache.store(0, k, v)
    cache.forget_from(10)
    q = rng.standard_normal((1, 2, 32)).astype(np.float32)
    with pytest.raises(_core.UnigemmaError, match=r"\[attention\] KV cache does not hold position 10"):
        cache.attention(q, 12)
    with pytest.raises(_core.InputError, match=r"\[attention\] n_head 3 is not a multiple"):
        cache.attention(rng.standard_normal((1, 3, 32)).astype(np.float32), 5)
    with pytest.raises(_core.InputError, match=r"\[attention\] empty or negative key range"):
        cache.attention_range(q[0], 5, 4)


# ------------------------------------------------------------------ batch invariance (bitwise)

@pytest.mark.parametrize("kv_type,nkv,nh,hd,sliding", [
    (t, *c) for t in ("f32", "f16", "q8_0") for c in [(2, 4, 64, False), (1, 3, 24, True), (8, 16, 512, False)]
    if t != "q8_0" or c[2] % 32 == 0])
def test_batch_invariance(kv_type, nkv, nh, hd, sliding):
    rng = np.random.default_rng(11)
    n_pos = 200
    window = 45 if sliding else 0
    cache, k, v = make_cache(rng, kv_type, nkv, hd, n_pos, sliding=sliding, window=window, n_ctx=512,
                             n_ubatch=128)
    cache.store(0, k, v)
    q = rng.standard_normal((100, nh, hd)).astype(np.float32)
    pos0 = n_pos - 100
    bits = lambda x: np.ascontiguousarray(x).view(np.uint32)  # noqa: E731
    for isa in ISAS + ["scalar"]:
        full = cache.attention(q, pos0, n_threads=2, isa=isa)
        assert np.array_equal(bits(full), bits(cache.attention(q, pos0, n_threads=1, isa=isa))), isa
        # every split of the batch into consecutive pieces (decode = pieces of 1)
        for splits in ([1] * 5, [3, 4, 33], [17, 64]):
            t = 0
            for n in splits:
                part = cache.attention(q[t:t + n], pos0 + t, n_threads=(1 + n % 2), isa=isa)
                assert np.array_equal(bits(part), bits(full[t:t + n])), (isa, splits, t)
                t += n
        # the drafter's single-query path sees the same bits for the same key range
        t = 99
        lo = max(0, pos0 + t - window + 1) if window else 0
        rng_out = cache.attention_range(q[t], lo, pos0 + t, n_threads=2, isa=isa)
        assert np.array_equal(bits(rng_out), bits(full[t])), isa

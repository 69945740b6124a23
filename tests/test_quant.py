"""Block formats (csrc/quant) against the reference numpy implementation in gguf.quants.

* quantize: F32/F16/BF16 and the legacy types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 must give the same
  bytes as gguf.quants.quantize (F16 is numpy's astype(float16)).
* dequantize: every supported type must give the same float32 bits as gguf.quants.dequantize
  (Q8_K, which gguf.quants lacks, against a numpy transcription of the format).
* K-quant quantizers (Q4_K, Q5_K, Q6_K; gguf.quants has none) are our own search: their bytes
  must decode identically with gguf.quants, and the round-trip error must stay within these
  bounds on Gaussian data (relative RMSE = rms(dequant - x) / rms(x), float64):
      type   whole-sample   any 256-multiple row   max |err| / max |x| per super-block
      Q4_K   <= 0.073       <= 0.095               <= 0.12
      Q5_K   <= 0.036       <= 0.048               <= 0.06
      Q6_K   <= 0.0175      <= 0.024               <= 0.025
  (measured: 0.0706 / 0.0348 / 0.0166 whole-sample), and beat a naive min/max quantizer that
  keeps its sub-block scales in float32.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gguf.quants as gguf_quants
from gguf import GGMLQuantizationType as GQT  # noqa: E402

from unigemma import _core as core  # noqa: E402

LEGACY = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
FLOATS = ["F32", "F16", "BF16"]
KQUANT = ["Q4_K", "Q5_K", "Q6_K"]
DEQUANT_ONLY = ["Q2_K", "Q3_K", "Q8_K"]
BLOCK = {"F32": 1, "F16": 1, "BF16": 1, "Q8_0": 32, "Q4_0": 32, "Q4_1": 32, "Q5_0": 32, "Q5_1": 32,
         "Q2_K": 256, "Q3_K": 256, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256, "Q8_K": 256}
TYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "Q8_0": 34, "Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q5_1": 24,
             "Q2_K": 84, "Q3_K": 110, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210, "Q8_K": 292}
# Byte offsets of the fp16 scale fields inside one block (random bytes get finite scales here).
FP16_FIELDS = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2],
               "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
KBOUNDS = {  # whole-sample rel RMSE, per-row rel RMSE, per-super-block max err / max |x|
    "Q4_K": (0.073, 0.095, 0.12),
    "Q5_K": (0.036, 0.048, 0.06),
    "Q6_K": (0.0175, 0.024, 0.025),
}

HSET = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ref_quantize(x: np.ndarray, name: str) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.ascontiguousarray(gguf_quants.quantize(x, GQT[name])).view(np.uint8).reshape(-1)


def ref_dequantize(raw: np.ndarray, name: str, n: int) -> np.ndarray:
    if name == "Q8_K":  # not in gguf.quants: float32 d, int8 qs[256], int16 bsums[16]
        blocks = raw.reshape(-1, 292)
        d = blocks[:, :4].copy().view(np.float32)
        q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(-1)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = gguf_quants.dequantize(raw.copy(), GQT[name])
    return np.asarray(out, dtype=np.float32).reshape(-1)[:n]


def same_floats(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit equality, except that any NaN matches any NaN (numpy's half->float NaN payload
    handling is platform-dependent)."""
    a = np.asarray(a, np.float32).reshape(-1)
    b = np.asarray(b, np.float32).reshape(-1)
    if a.shape != b.shape:
        return False
    na, nb = np.isnan(a), np.isnan(b)
    return bool(np.array_equal(na, nb) and np.array_equal(a[~na].view(np.uint32), b[~nb].view(np.uint32)))


# ------------------------------------------------------------------ data generation

ROW_KINDS = ["normal", "normal", "normal", "zeros", "constant", "outlier", "subnormal", "tiny", "mixed_sign_const"]


def make_row(rng: np.random.Generator, kind: str, n: int, scale: float) -> np.ndarray:
    if kind == "normal":
        r = rng.standard_normal(n) * scale
    elif kind == "zeros":
        r = np.zeros(n)
    elif kind == "constant":
        r = np.full(n, rng.choice([-1.0, 1.0]) * scale * rng.uniform(0.1, 3.0))
    elif kind == "outlier":
        r = rng.standard_normal(n) * scale
        r[rng.integers(n)] = rng.choice([-1.0, 1.0]) * scale * 10.0 ** rng.uniform(2, 5)
    elif kind == "subnormal":
        r = rng.standard_normal(n) * 1e-40
    elif kind == "tiny":
        r = rng.standard_normal(n) * 10.0 ** rng.uniform(-30, -10)
    else:  # blocks of +c / -c
        r = np.where(rng.integers(0, 2, n) == 1, 1.0, -1.0) * scale
    return r.astype(np.float32)


@st.composite
def float_rows(draw, block: int, kinds=ROW_KINDS, log_scale=(-8.0, 4.0)):
    n_rows = draw(st.integers(1, 8))
    k = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = k * block
    rows = []
    for _ in range(n_rows):
        kind = draw(st.sampled_from(kinds))
        scale = 10.0 ** draw(st.floats(*log_scale))
        rows.append(make_row(rng, kind, n, scale))
    return np.stack(rows)


def special_float_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """Values that stress fp16/bf16 rounding: inf, NaN, overflow boundaries, subnormals, ties."""
    specials = np.array([np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0, 65504.0, 65519.996, 65520.0, -65520.0,
                         1e-45, -1e-45, 2.9802322e-08, 2.9802326e-08, 5.96e-08, 6.1035156e-05, 3.4028235e38,
                         1.0009765625, 1.00048828125, 1.00146484375, 1.0 + 2**-8, 1.0 + 3 * 2**-8], np.float32)
    bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    # Random bit patterns, NaNs made quiet (signalling-NaN payloads differ between numpy's
    # software and F16C half conversions).
    nan = (bits & 0x7F800000) == 0x7F800000
    nan &= (bits & 0x007FFFFF) != 0
    bits = np.where(nan, bits | 0x00400000, bits)
    vals = bits.view(np.float32).copy()
    pick = rng.integers(0, 3, n)
    vals = np.where(pick == 0, rng.choice(specials, n), vals)
    vals = np.where(pick == 1, (rng.standard_normal(n) * 10.0 ** rng.uniform(-9, 6, n)).astype(np.float32), vals)
    return vals.astype(np.float32)


# ------------------------------------------------------------------ quantize: bit identity

@pytest.mark.parametrize("name", FLOATS + LEGACY)
@HSET
@given(data=st.data())
def test_quantize_matches_gguf(name, data):
    x = data.draw(float_rows(BLOCK[name] if BLOCK[name] > 1 else 16))
    got = core.quantize(x, name)
    assert got.dtype == np.uint8 and got.size == x.size // BLOCK[name] * TYPE_SIZE[name]
    np.testing.assert_array_equal(got, ref_quantize(x, name))


@pytest.mark.parametrize("name", ["F16", "BF16", "F32"])
@HSET
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(1, 8), n=st.integers(1, 200))
def test_quantize_float_specials(name, seed, n_rows, n):
    rng = np.random.default_rng(seed)
    x = special_float_values(rng, n_rows * n).reshape(n_rows, n)
    np.testing.assert_array_equal(core.quantize(x, name), ref_quantize(x, name))


def test_f16_all_half_values_and_rounding_boundaries():
    # every finite half value, its neighbours midway (ties) and a hair either side
    h = np.arange(0, 0x7C00, dtype=np.uint32)
    lo = h.astype(np.uint16).view(np.float16).astype(np.float32)
    hi = (h + 1).astype(np.uint16).view(np.float16).astype(np.float32)
    mid = ((lo.astype(np.float64) + hi) / 2).astype(np.float32)
    x = np.concatenate([lo, mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(0))])
    x = np.concatenate([x, -x])
    np.testing.assert_array_equal(core.quantize(x, "F16"), ref_quantize(x, "F16"))


@pytest.mark.parametrize("name", LEGACY)
def test_quantize_legacy_special_rows(name):
    rng = np.random.default_rng(3)
    rows = [np.zeros(64), np.full(64, 7.25), np.full(64, -0.001), np.r_[np.zeros(63), 1e30],
            rng.standard_normal(64) * 1e-40, np.r_[rng.standard_normal(63), -1e-40],
            np.full(64, 1e-45), rng.standard_normal(64) * 1e30, rng.standard_normal(64) * 65504 * 127,
            np.tile([1.0, -1.0], 32), np.r_[np.full(32, 3.0), np.full(32, -3.0)]]
    x = np.stack(rows).astype(np.float32)
    np.testing.assert_array_equal(core.quantize(x, name), ref_quantize(x, name))


# ------------------------------------------------------------------ dequantize: bit identity

def random_blocks(rng: np.random.Generator, name: str, n_blocks: int) -> np.ndarray:
    raw = rng.integers(0, 256, n_blocks * TYPE_SIZE[name], dtype=np.uint8).reshape(n_blocks, TYPE_SIZE[name])
    for off in FP16_FIELDS.get(name, []):
        h = rng.integers(0, 2**16, n_blocks, dtype=np.uint32)
        h = np.where((h & 0x7C00) == 0x7C00, h & 0xBFFF, h).astype(np.uint16)  # finite only
        raw[:, off:off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    if name == "Q8_K":
        d = (rng.standard_normal(n_blocks) * 10.0 ** rng.uniform(-6, 6, n_blocks)).astype(np.float32)
        raw[:, 0:4] = d.view(np.uint8).reshape(n_blocks, 4)
    return raw.reshape(-1)


@pytest.mark.parametrize("name", FLOATS + LEGACY + KQUANT + DEQUANT_ONLY)
@HSET
@given(seed=st.integers(0, 2**32 - 1), n_blocks=st.integers(1, 12))
def test_dequantize_random_bytes_matches_gguf(name, seed, n_blocks):
    rng = np.random.default_rng(seed)
    if BLOCK[name] == 1:
        n_blocks *= 37
    raw = random_blocks(rng, name, n_blocks)
    n = n_blocks * BLOCK[name]
    got = core.dequantize(raw, name, n)
    assert got.dtype == np.float32 and got.shape == (n,)
    assert same_floats(got, ref_dequantize(raw, name, n))


@pytest.mark.parametrize("name", FLOATS + LEGACY + KQUANT)
@HSET
@given(data=st.data())
def test_dequantize_quantized_matches_gguf(name, data):
    x = data.draw(float_rows(BLOCK[name] if BLOCK[name] > 1 else 16, log_scale=(-8.0, 4.0)))
    raw = core.quantize(x, name)
    got = core.dequantize(raw, name, x.size)
    assert same_floats(got, ref_dequantize(raw, name, x.size))
    if name == "F32":
        assert same_floats(got, x)


# ------------------------------------------------------------------ K-quant quality

def naive_dequant(x: np.ndarray, name: str) -> np.ndarray:
    """Min/max (or max-abs) rounding per sub-block with float64 scales: the baseline to beat."""
    sub, nmax, sym = {"Q4_K": (32, 15, False), "Q5_K": (32, 31, False), "Q6_K": (16, 31, True)}[name]
    b = x.astype(np.float64).reshape(-1, sub)
    if sym:
        v = b[np.arange(len(b)), np.abs(b).argmax(1)][:, None]
        d = v / -(nmax + 1)
        d[d == 0] = 1
        return (np.clip(np.round(b / d), -nmax - 1, nmax) * d).reshape(x.shape)
    lo = np.minimum(b.min(1, keepdims=True), 0)
    d = (b.max(1, keepdims=True) - lo) / nmax
    d[d == 0] = 1
    return (np.clip(np.round((b - lo) / d), 0, nmax) * d + lo).reshape(x.shape)


def rel_rmse(y: np.ndarray, x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float(np.sqrt(((y.astype(np.float64) - x) ** 2).mean() / (x ** 2).mean()))


@pytest.mark.parametrize("name", KQUANT)
def test_kquant_error_whole_sample(name):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((64, 4096)).astype(np.float32)
    raw = core.quantize(x, name)
    y = core.dequantize(raw, name, x.size).reshape(x.shape)
    assert same_floats(y, ref_dequantize(raw, name, x.size))
    err = rel_rmse(y, x)
    assert err <= KBOUNDS[name][0], err
    assert err < rel_rmse(naive_dequant(x, name), x)


@pytest.mark.parametrize("name", KQUANT)
@HSET
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(1, 8), k=st.integers(1, 12),
       log_scale=st.floats(-2.0, 4.0))
def test_kquant_error_bounds(name, seed, n_rows, k, log_scale):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n_rows, 256 * k)) * 10.0 ** log_scale).astype(np.float32)
    y = core.dequantize(core.quantize(x, name), name, x.size).reshape(x.shape).astype(np.float64)
    _, row_bound, block_bound = KBOUNDS[name]
    for r in range(n_rows):
        assert rel_rmse(y[r], x[r]) <= row_bound
    err = np.abs(y - x).reshape(-1, 256).max(1)
    amax = np.abs(x.astype(np.float64)).reshape(-1, 256).max(1)
    assert np.all(err <= block_bound * amax)


@pytest.mark.parametrize("name", KQUANT)
def test_kquant_special_rows(name):
    rng = np.random.default_rng(5)
    n = 512
    cases = {
        "zeros": np.zeros(n),
        "pos_const": np.full(n, 3.7),
        "neg_const": np.full(n, -3.7),
        "subnormal": rng.standard_normal(n) * 1e-40,
        "tiny": rng.standard_normal(n) * 1e-9,
        "outlier": np.r_[rng.standard_normal(n - 1), 1e4],
        "huge": rng.standard_normal(n) * 1e30,  # beyond fp16 scales: saturates, stays finite
        "all_pos": np.abs(rng.standard_normal(n)) + 5,
        "all_neg": -np.abs(rng.standard_normal(n)) - 5,
    }
    for label, row in cases.items():
        x = row.astype(np.float32)[None]
        raw = core.quantize(x, name)
        y = core.dequantize(raw, name, n)
        assert same_floats(y, ref_dequantize(raw, name, n)), label
        assert np.all(np.isfinite(y)), label
        if label == "zeros":
            assert np.all(y == 0)
        elif label in ("subnormal", "tiny"):  # far below the format's resolution: zeros
            assert np.all(np.abs(y) <= 6e-8), label
        elif label in ("pos_const", "neg_const"):
            assert np.max(np.abs(y - x[0])) <= 1e-3 * 3.7, label
        elif label in ("all_pos", "all_neg"):
            assert rel_rmse(y, x[0]) <= KBOUNDS[name][1], label


@pytest.mark.parametrize("name", KQUANT)
def test_kquant_rejects_non_finite(name):
    for bad in (np.nan, np.inf, -np.inf):
        x = np.zeros((40, 256), np.float32)
        x[33, 17] = bad
        with pytest.raises(core.InputError, match=r"^\[quantize\]"):
            core.quantize(x, name, 4)  # raised in a worker thread, surfaced here


# ------------------------------------------------------------------ threads

@pytest.mark.parametrize("name", FLOATS + LEGACY + KQUANT)
def test_thread_count_independent(name):
    rng = np.random.default_rng(9)
    n = 512
    x = np.stack([make_row(rng, ROW_KINDS[i % len(ROW_KINDS)], n, 10.0 ** rng.uniform(-3, 3)) for i in range(37)])
    outs = [core.quantize(x, name, t) for t in (1, 2, 5, 0, 64)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    if name in LEGACY or name in FLOATS:
        np.testing.assert_array_equal(outs[0], ref_quantize(x, name))


# ------------------------------------------------------------------ argument checking

@pytest.mark.parametrize("name", LEGACY + KQUANT)
def test_bad_row_length(name):
    x = np.zeros((2, BLOCK[name] + 1), np.float32)
    with pytest.raises(core.InputError, match=r"^\[quantize\]"):
        core.quantize(x, name)
    with pytest.raises(core.InputError, match=r"^\[dequantize\]"):
        core.dequantize(np.zeros(TYPE_SIZE[name] * 2, np.uint8), name, BLOCK[name] + 1)


def test_unknown_and_unsupported_types():
    x = np.zeros((1, 256), np.float32)
    for bad in ("Q9_9", "", "float32", "q4_k_m"):
        with pytest.raises(core.InputError):
            core.quantize(x, bad)
        with pytest.raises(core.InputError):
            core.dequantize(np.zeros(1024, np.uint8), bad, 256)
    for unsupported in ("Q2_K", "Q3_K", "Q8_K", "IQ2_XXS", "Q8_1", "I32"):
        with pytest.raises(core.InputError, match=r"^\[quantize\]"):
            core.quantize(x, unsupported)
    for unsupported in ("IQ2_XXS", "Q8_1", "TQ1_0"):
        with pytest.raises(core.InputError, match=r"^\[dequantize\]"):
            core.dequantize(np.zeros(4096, np.uint8), unsupported, 256)


def test_dequantize_short_buffer_and_lowercase_names():
    with pytest.raises(core.InputError, match=r"^\[dequantize\]"):
        core.dequantize(np.zeros(143, np.uint8), "Q4_K", 256)
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_array_equal(core.quantize(x, "q8_0"), core.quantize(x, "Q8_0"))
    assert core.dequantize(np.zeros(0, np.uint8), "Q8_0", 0).shape == (0,)


def test_quantize_shapes():
    rng = np.random.default_rng(1)
    x3 = rng.standard_normal((2, 3, 64)).astype(np.float32)
    np.testing.assert_array_equal(core.quantize(x3, "Q4_0"), ref_quantize(x3.reshape(6, 64), "Q4_0"))
    x1 = rng.standard_normal(96).astype(np.float32)
    np.testing.assert_array_equal(core.quantize(x1, "Q5_1"), ref_quantize(x1[None], "Q5_1"))
    xd = rng.standard_normal((4, 32))  # float64 input is cast to float32 first
    np.testing.assert_array_equal(core.quantize(xd, "Q8_0"), ref_quantize(xd.astype(np.float32), "Q8_0"))
    xt = rng.standard_normal((64, 4)).astype(np.float32).T  # non-contiguous
    np.testing.assert_array_equal(core.quantize(xt, "Q8_0", 3), ref_quantize(np.ascontiguousarray(xt), "Q8_0"))

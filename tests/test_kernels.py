"""CPU kernel tables (unigemma._core.kernels): every weight format x every ISA path this CPU
can run, against float64 NumPy references on the dequantized data, plus ISA-vs-scalar
agreement, the elementwise ops and the UNIGEMMA_ISA override.

Error bounds (eps = 2^-23, float32):
  * quantized dots: the integer dot inside a block is exact; each block term is a few float32
    products (<= 4 eps relative), the weights' float32 dequantization adds <= 3 eps, and the
    nb block terms are summed in float32 (every SIMD lane sees every block), so
        |dot - ref| <= 2 * (nb + 16) * eps * S,
    S = sum_i (|scale part of w_i| + |min part of w_i|) * |x_i| (the two parts of an affine
    format are bounded separately because they may cancel), nb = number of blocks.
    Q4_1/Q5_1 use Q8_1 activations, whose block sum s is stored as fp16: the reference adds
    the exact effect of that rounding (m * (s - d * sum q)), so the bound stays the same.
  * float weights (F32/F16/BF16): products are exact in float64, summed in float32 in >= 4
    partial sums (SIMD lanes): |dot - ref| <= 2 * (n / 4 + 16) * eps * sum|w_i x_i|.
  * activation quantization: |x - q d| <= 0.5 d (1 + 1e-6) + 4 eps |x|, bit-identical on every
    ISA path.
  * elementwise: add/mul/scale exact (IEEE float32); rms_norm/layer_norm/softmax relative
    ~(n/8 + 64) eps; gelu/softcap/rope a few 1e-6 relative to the operands' magnitude.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unigemma import _core

K = _core.kernels
ISAS = K.available_isas()
EPS = float(np.finfo(np.float32).eps)
TINY = float(np.finfo(np.float32).tiny)

SETTINGS = dict(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# type -> (block elements, block bytes, offsets of fp16 scale fields, offsets of fp16 min fields)
FORMATS = {
    "F32": (1, 4, (), ()),
    "F16": (1, 2, (), ()),
    "BF16": (1, 2, (), ()),
    "Q8_0": (32, 34, (0,), ()),
    "Q4_0": (32, 18, (0,), ()),
    "Q4_1": (32, 20, (0,), (2,)),
    "Q5_0": (32, 22, (0,), ()),
    "Q5_1": (32, 24, (0,), (2,)),
    "Q2_K": (256, 84, (80,), (82,)),
    "Q3_K": (256, 110, (108,), ()),
    "Q4_K": (256, 144, (0,), (2,)),
    "Q5_K": (256, 176, (0,), (2,)),
    "Q6_K": (256, 210, (208,), ()),
}
QUANTIZABLE = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"}
ACT_BLOCK = {"F32": (1, 4), "Q8_0": (32, 34), "Q8_1": (32, 36), "Q8_K": (256, 292)}


# ------------------------------------------------------------------ data generation

def rand_floats(rng, n, mag):
    """Gaussian values times a random per-32 magnitude up to `mag`, with some exact zeros."""
    x = rng.standard_normal(n).astype(np.float64)
    groups = (n + 31) // 32
    scale = np.repeat(10.0 ** rng.uniform(-2, 0, groups), 32)[:n] * mag
    x *= scale
    x[rng.random(n) < 0.02] = 0.0
    return x.astype(np.float32)


def make_weights(rng, wtype, rows, n, mag, random_bytes):
    """`rows` rows of n elements of `wtype` as raw bytes (rows * row_bytes)."""
    blk, bb, dofs, mofs = FORMATS[wtype]
    if wtype in ("F32", "F16", "BF16"):
        x = rand_floats(rng, rows * n, mag)
        return _core.quantize(x.reshape(rows, n), wtype)
    if random_bytes or wtype not in QUANTIZABLE:
        nb = rows * n // blk
        raw = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)
        for ofs in dofs + mofs:  # finite fp16 scales of random sign and magnitude
            v = (rng.standard_normal(nb) * mag * 10.0 ** rng.uniform(-3, -1, nb)).astype(np.float16)
            raw[:, ofs:ofs + 2] = v.view(np.uint8).reshape(nb, 2)
        return raw.reshape(-1)
    x = rand_floats(rng, rows * n, mag)
    return _core.quantize(x.reshape(rows, n), wtype)


def row_bytes(t, n):
    blk, bb = (FORMATS[t][:2]) if t in FORMATS else ACT_BLOCK[t]
    return n // blk * bb


def decode_act(act, raw, n):
    """Activation blocks -> float64 values (plus Q8_1 block sums s, fp16)."""
    raw = np.asarray(raw, dtype=np.uint8)
    if act == "F32":
        return raw.view(np.float32).astype(np.float64), None
    if act == "Q8_0":
        return _core.dequantize(raw, "Q8_0", n).astype(np.float64), None
    if act == "Q8_1":
        b = raw.reshape(-1, 36)
        d = b[:, 0:2].copy().view(np.float16).astype(np.float64)
        s = b[:, 2:4].copy().view(np.float16).astype(np.float64)[:, 0]
        q = b[:, 4:].view(np.int8).astype(np.float64)
        return (d * q).reshape(-1), s
    if act == "Q8_K":
        b = raw.reshape(-1, 292)
        d = b[:, 0:4].copy().view(np.float32).astype(np.float64)
        q = b[:, 4:260].view(np.int8)
        bsums = b[:, 260:292].copy().view(np.int16)
        assert np.array_equal(bsums, q.reshape(-1, 16, 16).astype(np.int32).sum(axis=2)), "Q8_K bsums"
        return (d * q.astype(np.float64)).reshape(-1), None
    raise AssertionError(act)


def weight_parts(wtype, raw, n):
    """(w, |scale part| + |min part|) in float64 for one row of raw weight blocks."""
    w = _core.dequantize(raw, wtype, n).astype(np.float64)
    blk, bb, _, mofs = FORMATS[wtype]
    if not mofs:
        return w, np.abs(w)
    z = np.array(raw, dtype=np.uint8).reshape(-1, bb).copy()
    for ofs in mofs:
        z[:, ofs:ofs + 2] = 0
    p = _core.dequantize(z.reshape(-1), wtype, n).astype(np.float64)
    return w, np.abs(p) + np.abs(p - w)


def reference(wtype, wraw, act, araw, n):
    """(float64 reference dot, bound) for one weight row and one activation row."""
    w, wabs = weight_parts(wtype, wraw, n)
    x, s = decode_act(act, araw, n)
    ref = float(np.dot(w, x))
    S = float(np.dot(wabs, np.abs(x)))
    blk = FORMATS[wtype][0]
    if act == "Q8_1":
        # the kernel uses the stored fp16 block sum s instead of d * sum(q)
        bb = FORMATS[wtype][1]
        m = np.array(wraw, dtype=np.uint8).reshape(-1, bb)[:, 2:4].copy().view(np.float16).astype(np.float64)[:, 0]
        exact_s = x.reshape(-1, 32).sum(axis=1)
        ref += float(np.dot(m, s - exact_s))
        S += float(np.dot(np.abs(m), np.abs(s)))
    terms = n // blk if blk > 1 else n / 4
    bound = 2.0 * (terms + 16) * EPS * S + 1e-35
    return ref, bound


def n_strategy(wtype):
    blk = FORMATS[wtype][0]
    if blk == 1:
        return st.one_of(st.integers(1, 70), st.integers(1, 1100))
    if blk == 32:
        return st.integers(1, 40).map(lambda k: 32 * k)
    return st.integers(1, 5).map(lambda k: 256 * k)


def act_magnitude(act, draw):
    if act == "Q8_1":  # its fp16 block sum must stay finite: |sum x| < 65504 per block
        return draw(st.sampled_from([1e-3, 1.0, 30.0, 1000.0]))
    if act == "Q8_0":  # fp16 scale: amax / 127 < 65504
        return draw(st.sampled_from([1e-3, 1.0, 100.0, 1e5]))
    return draw(st.sampled_from([1e-3, 1.0, 100.0, 1e5, 1e12]))


# ------------------------------------------------------------------ tests

def test_available_isas():
    assert ISAS[0] == "scalar"
    info = _core.build_info()
    for isa in info["available_isas"]:
        assert isa in ISAS
        assert K.table_isa(isa) == isa
    if info["cpu_features"]["avx512vnni"] and "avx512" in ISAS:
        assert "avx512-novnni" in ISAS


def test_activation_types():
    for t in ("F32", "F16", "BF16"):
        assert K.activation_type(t) == "F32"
    for t in ("Q4_0", "Q5_0", "Q8_0"):
        assert K.activation_type(t) == "Q8_0"
    for t in ("Q4_1", "Q5_1"):
        assert K.activation_type(t) == "Q8_1"
    for t in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"):
        assert K.activation_type(t) == "Q8_K"
    with pytest.raises(_core.InputError):
        K.activation_type("IQ2_XXS")


@pytest.mark.parametrize("act", ["Q8_0", "Q8_1", "Q8_K", "F32"])
@settings(**SETTINGS)
@given(data=st.data())
def test_quantize_act(act, data):
    blk = ACT_BLOCK[act][0]
    n = blk * data.draw(st.integers(1, 6 if blk == 256 else 40))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rand_floats(rng, n, act_magnitude(act, data.draw))
    ref_raw = K.quantize_act("scalar", act, x)
    assert ref_raw.size == row_bytes(act, n)
    xd, s = decode_act(act, ref_raw, n)
    if act == "F32":
        assert np.array_equal(xd, x.astype(np.float64))
    else:
        if act == "Q8_K":
            d = np.repeat(np.asarray(ref_raw).reshape(-1, 292)[:, 0:4].copy().view(np.float32)[:, 0], 256)
        else:
            bb = ACT_BLOCK[act][1]
            d = np.repeat(np.asarray(ref_raw).reshape(-1, bb)[:, 0:2].copy().view(np.float16)[:, 0], 32)
        d = d.astype(np.float64)
        err = np.abs(xd - x.astype(np.float64))
        tiny = d == 0  # scale underflow: the block holds only values too small for the format
        assert np.all(err[~tiny] <= 0.5 * d[~tiny] * (1 + 1e-6) + 4 * EPS * np.abs(x[~tiny]))
        assert np.all(np.abs(x[tiny]) <= 127 * 2.0**-24)
        if act == "Q8_1":
            exact = xd.reshape(-1, 32).sum(axis=1)
            assert np.all(np.abs(s - exact) <= 2.0**-10 * np.abs(exact) + 2.0**-24)
    for isa in ISAS[1:]:
        got = K.quantize_act(isa, act, x)
        assert np.array_equal(got, ref_raw), f"{isa} {act} differs from scalar"


@pytest.mark.parametrize("wtype", list(FORMATS))
@settings(**SETTINGS)
@given(data=st.data())
def test_vec_dot(wtype, data):
    n = data.draw(n_strategy(wtype))
    seed = data.draw(st.integers(0, 2**32 - 1))
    random_bytes = data.draw(st.booleans())
    rng = np.random.default_rng(seed)
    act = K.activation_type(wtype)
    wmag = data.draw(st.sampled_from([1e-2, 1.0, 1e3]))
    w = make_weights(rng, wtype, 1, n, wmag, random_bytes)
    x = rand_floats(rng, n, act_magnitude(act, data.draw))
    xq = K.quantize_act("scalar", act, x)
    ref, bound = reference(wtype, w, act, xq, n)
    results = {}
    for isa in ISAS:
        got = K.vec_dot(isa, wtype, w, xq, n)
        results[isa] = got
        assert abs(got - ref) <= bound, f"{isa} {wtype} n={n}: {got} vs {ref} (bound {bound})"
    for isa, got in results.items():  # agreement with the scalar reference table
        assert abs(got - results["scalar"]) <= 2 * bound, isa


@pytest.mark.parametrize("wtype", list(FORMATS))
@settings(**SETTINGS)
@given(data=st.data())
def test_tile_dot(wtype, data):
    n = data.draw(n_strategy(wtype))
    nr = data.draw(st.integers(1, 4))
    nc = data.draw(st.integers(1, 4))
    pad_w = data.draw(st.sampled_from([0, 0, 7, 64]))
    pad_x = data.draw(st.sampled_from([0, 0, 5, 64]))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    act = K.activation_type(wtype)
    wb, xb = row_bytes(wtype, n), row_bytes(act, n)
    w_rows = np.asarray(make_weights(rng, wtype, nr, n, 1.0, data.draw(st.booleans()))).reshape(nr, wb)
    x = rand_floats(rng, nc * n, act_magnitude(act, data.draw)).reshape(nc, n)
    x_rows = np.stack([np.asarray(K.quantize_act("scalar", act, x[c])) for c in range(nc)])
    # lay rows out with padding between them (strides wb + pad)
    wbuf = np.zeros(nr * (wb + pad_w), np.uint8)
    xbuf = np.zeros(nc * (xb + pad_x), np.uint8)
    for r in range(nr):
        wbuf[r * (wb + pad_w): r * (wb + pad_w) + wb] = w_rows[r]
    for c in range(nc):
        xbuf[c * (xb + pad_x): c * (xb + pad_x) + xb] = x_rows[c]
    refs = np.zeros((nc, nr))
    bounds = np.zeros((nc, nr))
    for c in range(nc):
        for r in range(nr):
            refs[c, r], bounds[c, r] = reference(wtype, w_rows[r], act, x_rows[c], n)
    for isa in ISAS:
        out = K.tile_dot(isa, wtype, n, nr, nc, wbuf, xbuf, wb + pad_w, xb + pad_x)
        assert out.shape == (nc, nr)
        assert np.all(np.abs(out - refs) <= bounds), f"{isa} {wtype} n={n} nr={nr} nc={nc}"


def test_kernel_input_validation():
    w = np.zeros(18, np.uint8)
    x = np.zeros(34, np.uint8)
    assert K.vec_dot("scalar", "Q4_0", w, x, 32) == 0.0
    with pytest.raises(_core.InputError):
        K.vec_dot("scalar", "Q4_0", w, x, 64)  # buffers too small
    with pytest.raises(_core.InputError):
        K.vec_dot("scalar", "Q4_0", w, x, 31)  # not a multiple of the block
    with pytest.raises(_core.InputError):
        K.tile_dot("scalar", "Q4_0", 32, 2, 1, w, x)  # only one weight row
    with pytest.raises(_core.InputError):
        K.tile_dot("scalar", "Q4_0", 32, 5, 1, np.zeros(100, np.uint8), x)
    with pytest.raises(_core.InputError):
        K.quantize_act("scalar", "Q8_K", np.zeros(100, np.float32))
    with pytest.raises(_core.InputError):
        K.vec_dot("no-such-isa", "Q4_0", w, x, 32)
    with pytest.raises(_core.InputError):
        K.rms_norm("scalar", np.zeros(4, np.float32), np.zeros(3, np.float32))
    with pytest.raises(_core.InputError):
        K.rope_neox("scalar", np.zeros(6, np.float32), 1.0, np.zeros(2, np.float32))
    with pytest.raises(_core.InputError):
        K.add("scalar", np.zeros(0, np.float32), np.zeros(0, np.float32))


# ------------------------------------------------------------------ elementwise

def ew_vec(data, mags=(1e-3, 1.0, 30.0, 1e4)):
    n = data.draw(st.one_of(st.integers(1, 40), st.integers(1, 3000)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    mag = data.draw(st.sampled_from(mags))
    return n, rng, (rng.standard_normal(n) * mag).astype(np.float32)


def gelu64(x):
    x = x.astype(np.float64)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


@settings(**SETTINGS)
@given(data=st.data())
def test_rms_norm(data):
    n, rng, x = ew_vec(data)
    w = (rng.standard_normal(n) + 1).astype(np.float32)
    eps = 1e-6
    x64 = x.astype(np.float64)
    r = 1 / np.sqrt(np.mean(x64**2) + eps)
    tol = (n / 8 + 64) * EPS
    for isa in ISAS:
        got = K.rms_norm(isa, x, w, eps)
        ref = x64 * r * w
        assert np.all(np.abs(got - ref) <= tol * np.abs(ref) + 1e-30), isa
        got = K.rms_norm(isa, x, None, eps)
        assert np.all(np.abs(got - x64 * r) <= tol * np.abs(x64 * r) + 1e-30), isa


@settings(**SETTINGS)
@given(data=st.data())
def test_layer_norm(data):
    n, rng, x = ew_vec(data)
    x = x + np.float32(data.draw(st.sampled_from([0.0, 3.0])) * np.abs(x).max())  # an offset mean
    w = (rng.standard_normal(n) + 1).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    eps = 1e-5
    x64 = x.astype(np.float64)
    mu = x64.mean()
    sd = np.sqrt(((x64 - mu) ** 2).mean() + eps)
    z = (x64 - mu) / sd
    # float32 mean/variance: error relative to the spread of x about its float32 mean
    tol = (n / 8 + 64) * EPS * (1 + np.abs(x64).max() / sd)
    for isa in ISAS:
        got = K.layer_norm(isa, x, w, b, eps)
        assert np.all(np.abs(got - (z * w + b)) <= tol * (np.abs(z * w) + 1) * 1.0), isa
        got = K.layer_norm(isa, x, None, None, eps)
        assert np.all(np.abs(got - z) <= tol * (np.abs(z) + 1)), isa


@settings(**SETTINGS)
@given(data=st.data())
def test_gelu(data):
    n, rng, g = ew_vec(data, mags=(1e-3, 1.0, 4.0, 100.0, 1e30))
    u = rng.standard_normal(n).astype(np.float32)
    ref = gelu64(g)
    tol = 4e-6 * np.maximum(np.abs(g.astype(np.float64)), 1e-30) + 4 * EPS * np.abs(ref)
    for isa in ISAS:
        got = K.gelu_tanh(isa, g)
        assert np.all(np.abs(got - ref) <= tol), isa
        got = K.gelu_tanh_mul(isa, g, u)
        assert np.all(np.abs(got - ref * u) <= tol * np.abs(u) + 4 * EPS * np.abs(ref * u)), isa


@settings(**SETTINGS)
@given(data=st.data())
def test_softmax(data):
    n, rng, x = ew_vec(data, mags=(1e-3, 1.0, 30.0, 1e4))
    if data.draw(st.booleans()):
        x[rng.random(n) < 0.3] = -np.inf
        x[rng.integers(0, n)] = 0.5
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max())
    ref = e / e.sum()
    for isa in ISAS:
        got = K.softmax(isa, x)
        # probabilities below the smallest normal float32 (1.18e-38) may flush to zero: the
        # vector exp returns 0 once exp(x - max) is subnormal
        assert np.all(np.abs(got - ref) <= 1e-5 * ref + (n / 8 + 64) * EPS * ref + TINY), isa
        assert abs(float(got.astype(np.float64).sum()) - 1) <= 1e-4


def test_softmax_all_masked():
    x = np.full(37, -np.inf, np.float32)
    for isa in ISAS:
        assert np.array_equal(K.softmax(isa, x), np.zeros(37, np.float32))


@settings(**SETTINGS)
@given(data=st.data())
def test_softcap(data):
    n, rng, x = ew_vec(data, mags=(1e-3, 1.0, 30.0, 1e4, 1e30))
    cap = data.draw(st.sampled_from([30.0, 50.0, 1.0]))
    ref = cap * np.tanh(x.astype(np.float64) / cap)
    for isa in ISAS:
        got = K.softcap(isa, x, cap)
        assert np.all(np.abs(got - ref) <= 2e-6 * cap * np.minimum(1, np.abs(x) / cap + 1e-30) + 4 * EPS * np.abs(ref)), isa


@settings(**SETTINGS)
@given(data=st.data())
def test_add_mul_scale(data):
    n, rng, a = ew_vec(data)
    b = (rng.standard_normal(n) * 10).astype(np.float32)
    s = np.float32(rng.standard_normal())
    for isa in ISAS:
        assert np.array_equal(K.add(isa, a, b), a + b), isa
        assert np.array_equal(K.mul(isa, a, b), a * b), isa
        assert np.array_equal(K.scale(isa, a, s), a * s), isa


@settings(**SETTINGS)
@given(data=st.data())
def test_rope_neox(data):
    half = data.draw(st.sampled_from([1, 2, 3, 8, 13, 32, 64, 128, 256]))
    d = 2 * half
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal(d).astype(np.float32)
    pos = np.float32(data.draw(st.sampled_from([0, 1, 7, 1000, 131071])))
    base = data.draw(st.sampled_from([10000.0, 1e6]))
    inv = (base ** (-np.arange(half) / half)).astype(np.float32)
    if data.draw(st.booleans()):  # proportional RoPE: a tail of unrotated pairs
        inv[half // 2:] = 0
    th = (pos * inv).astype(np.float32).astype(np.float64)  # the kernels form pos * inv_freq in float32
    a, b = x[:half].astype(np.float64), x[half:].astype(np.float64)
    ref = np.concatenate([a * np.cos(th) - b * np.sin(th), a * np.sin(th) + b * np.cos(th)])
    mag = np.concatenate([np.abs(a) + np.abs(b)] * 2)
    for isa in ISAS:
        got = K.rope_neox(isa, x, float(pos), inv)
        assert np.all(np.abs(got - ref) <= 4e-6 * mag), isa
        if (inv == 0).any():
            z = np.concatenate([inv == 0, inv == 0])
            assert np.array_equal(got[z], x[z]), isa


# ------------------------------------------------------------------ UNIGEMMA_ISA

def _run_with_isa(isa):
    code = ("import json, unigemma; from unigemma import _core; "
            "print(json.dumps([unigemma.build_info()['selected_isa'], _core.kernels.selected_isa()]))")
    env = dict(os.environ, UNIGEMMA_ISA=isa)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_isa_override_subprocess():
    for isa in _core.build_info()["available_isas"]:
        r = _run_with_isa(isa)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1]) == [isa, isa]
    r = _run_with_isa("no-such-isa")
    assert r.returncode != 0
    assert "UNIGEMMA_ISA" in r.stderr


@pytest.mark.parametrize("rtype", ["F32", "F16", "Q8_0", "Q4_0"])
@settings(**SETTINGS)
@given(data=st.data())
def test_axpy_row(rtype, data):
    """acc += a * row for the KV-cache types (attention's weighted sum of V rows), every ISA
    path against float64 NumPy on the dequantized row."""
    blk = FORMATS[rtype][0]
    n = blk * data.draw(st.integers(1, 12)) if blk > 1 else data.draw(st.integers(1, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    mag = data.draw(st.sampled_from([1e-2, 1.0, 1e3]))
    row = make_weights(rng, rtype, 1, n, mag, data.draw(st.booleans()))
    a = float(np.float32(rng.standard_normal() * data.draw(st.sampled_from([1e-3, 1.0, 30.0]))))
    acc0 = rand_floats(rng, n, mag).astype(np.float32)
    vals = _core.dequantize(np.asarray(row, np.uint8), rtype, n).astype(np.float64)
    ref = acc0.astype(np.float64) + a * vals
    # one rounding of a*d (blocks), one of the product, one of the sum: a few eps each
    bound = 4 * EPS * (np.abs(acc0) + np.abs(a * vals)) + 1e-30
    for isa in ISAS:
        acc = acc0.copy()
        K.axpy_row(isa, rtype, a, row, acc)
        assert np.all(np.abs(acc - ref) <= bound), (isa, rtype, n, np.max(np.abs(acc - ref) - bound))
    with pytest.raises(_core.InputError, match="row needs"):
        K.axpy_row("scalar", rtype, 1.0, row[: len(row) - 1], acc0.copy())

"""Host twins of the CUDA backend's shared math (csrc/ops/cuda/block_math.cuh, sampler_math.cuh),
run on every machine: the device kernels compile the same UG_HD functions, so these tests check
the device arithmetic without a GPU (tools/harness/cuda_selftest.cu then checks device == twin).

* dequantize: the twin's per-unit decode (the GEMM weight-tile decode) must give the same
  float32 bits as the CPU dequantizer (`_core.dequantize`) for Q4_0, Q8_0, Q4_K, Q6_K, F16, BF16,
  F32, on random block bytes (finite fp16 scales) and on quantized Gaussian data.
* GEMV: the twin (the kernel's exact reduction order) against a float64 NumPy product of the
  CPU-dequantized weights and the activations: |y - ref| <= 2e-6 * sum_i |w_i x_i| + 1e-30
  per output. The longest rounding chain of the kernel order is 32 fma (one unit) + units/32
  lane adds + 5 butterfly adds + 2 scale ops, about 60 * 2^-24 = 3.6e-6 worst case for 6144
  columns; Gaussian data measures <= 1.5e-8 (Q4_K, whose min term can cancel, the worst).
  Token columns are computed independently: column c of a 1..8-column call equals a one-column call
  bitwise.
* sampler: the twin's kept set equals the CPU sampler's (tokens with nonzero `probs`), and
  the drawn token equals the CPU's for the same generator state, for top-k / top-p / min-p
  mixes; configurations the device hands back to the CPU report status 'fallback'.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from unigemma import _core as core

TYPES = ["Q4_0", "Q8_0", "Q4_K", "Q6_K", "F16", "BF16", "F32"]
BLOCK = {"Q4_0": 32, "Q8_0": 32, "Q4_K": 256, "Q6_K": 256, "F16": 1, "BF16": 1, "F32": 1}
TYPE_SIZE = {"Q4_0": 18, "Q8_0": 34, "Q4_K": 144, "Q6_K": 210, "F16": 2, "BF16": 2, "F32": 4}
FP16_FIELDS = {"Q4_0": [0], "Q8_0": [0], "Q4_K": [0, 2], "Q6_K": [208]}


def random_rows(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    """Random raw bytes of n elements with finite scales (and finite F16/BF16/F32 values)."""
    if name == "F32":
        return rng.standard_normal(n).astype(np.float32).view(np.uint8)
    if name in ("F16", "BF16"):
        x = rng.standard_normal(n).astype(np.float32)
        return core.quantize(x.reshape(1, -1), name).view(np.uint8)
    nb = n // BLOCK[name]
    raw = rng.integers(0, 256, size=(nb, TYPE_SIZE[name]), dtype=np.uint8)
    for off in FP16_FIELDS[name]:
        # finite fp16 of moderate size: exponent field 5..24 (no inf/NaN), random sign/mantissa
        h = (rng.integers(5, 25, size=nb, dtype=np.uint16) << 10) | rng.integers(0, 1024, size=nb, dtype=np.uint16)
        h |= (rng.integers(0, 2, size=nb, dtype=np.uint16) << 15)
        raw[:, off:off + 2] = h.astype("<u2").view(np.uint8).reshape(nb, 2)
    return raw.reshape(-1)


def quantized_rows(rng: np.random.Generator, name: str, rows: int, cols: int) -> np.ndarray:
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    return core.quantize(x, name).view(np.uint8)


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("seed", range(4))
def test_dequantize_bitwise_random_bytes(name, seed):
    rng = np.random.default_rng(1000 + seed)
    n = 256 * int(rng.integers(1, 9))
    raw = random_rows(rng, name, n)
    got = core.cuda_twin_dequantize(name, raw, n)
    want = core.dequantize(raw, name, n)
    assert got.dtype == np.float32 and got.shape == (n,)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("name", TYPES)
def test_dequantize_bitwise_quantized(name):
    rng = np.random.default_rng(7)
    raw = quantized_rows(rng, name, 3, 512)
    got = core.cuda_twin_dequantize(name, raw, 3 * 512)
    want = core.dequantize(raw, name, 3 * 512)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_dequantize_special_fp16_values():
    # F16 with subnormals, infinities, NaN payloads, signed zeros: every bit pattern
    raw = np.arange(65536, dtype=np.uint16).view(np.uint8)
    got = core.cuda_twin_dequantize("F16", raw, 65536)
    want = core.dequantize(raw, "F16", 65536)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    got = core.cuda_twin_dequantize("BF16", raw, 65536)
    want = core.dequantize(raw, "BF16", 65536)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("seed", range(3))
def test_gemv_against_float64(name, seed):
    rng = np.random.default_rng(2000 + seed)
    cols = 256 * int(rng.integers(1, 25))  # up to 6144: 1..192 units, lanes with 0..6 units
    rows = int(rng.integers(1, 40))
    n_tok = int(rng.integers(1, 9))
    raw = quantized_rows(rng, name, rows, cols) if seed % 2 == 0 else random_rows(rng, name, rows * cols)
    w = core.dequantize(raw, name, rows * cols).astype(np.float64).reshape(rows, cols)
    x = rng.standard_normal((n_tok, cols)).astype(np.float32)
    y = core.cuda_twin_gemv(name, raw, rows, cols, x)
    assert y.shape == (n_tok, rows) and y.dtype == np.float32
    ref = x.astype(np.float64) @ w.T
    bound = 2e-6 * (np.abs(x.astype(np.float64)) @ np.abs(w).T) + 1e-30
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= bound), f"{name}: worst err/bound {np.max(err / bound):.3g}"
    # columns are independent (batch invariance of the verify pass)
    for c in range(n_tok):
        y1 = core.cuda_twin_gemv(name, raw, rows, cols, x[c:c + 1])
        np.testing.assert_array_equal(y1[0].view(np.uint32), y[c].view(np.uint32))


def test_gemv_order_differs_from_sequential():
    # The twin really follows the documented lane/butterfly order: with values whose float32
    # sum depends on the order, lane order and sequential order give different bits.
    cols = 64 * 32
    x = np.zeros((1, cols), dtype=np.float32)
    w = np.ones((1, cols), dtype=np.float32)
    # unit 0 (lane 0) holds 2^24, unit 1 (lane 1) holds 1.0 x 32 entries of 1 -> per-lane sums
    x[0, :32] = 0.0
    x[0, 0] = 2.0**24
    x[0, 32:64] = 1.0
    y = core.cuda_twin_gemv("F32", w.view(np.uint8).reshape(-1), 1, cols, x)[0, 0]
    # lane 1's 32 is added to 2^24 in one step: exact (2^24 + 32 is representable)
    assert y == np.float32(2.0**24 + 32)
    seq = np.float32(0)
    for v in x[0]:
        seq = np.float32(seq + v)  # sequential float32: each +1 after 2^24 is lost
    assert seq == np.float32(2.0**24)


@pytest.mark.parametrize("name", ["F16", "Q8_0"])
@pytest.mark.parametrize("seed", range(3))
def test_kv_encode_bitwise(name, seed):
    # the device KV store must write what the CPU cache writes (quantize_rows)
    rng = np.random.default_rng(3000 + seed)
    x = (rng.standard_normal(32 * 64) * 10.0 ** rng.uniform(-8, 6, 32 * 64)).astype(np.float32)
    x[:32] = 0.0  # an all-zero block (d = 0)
    x[40] = 1e-42  # subnormal
    if name == "F16":
        x[50:53] = [np.inf, -np.inf, 70000.0]
    got = core.cuda_twin_encode(name, x)
    want = core.quantize(x.reshape(1, -1), name).view(np.uint8).reshape(-1)
    np.testing.assert_array_equal(got, want)


def test_twin_errors():
    with pytest.raises(core.InputError):
        core.cuda_twin_dequantize("Q5_0", np.zeros(22, np.uint8), 32)
    with pytest.raises(core.InputError):
        core.cuda_twin_dequantize("Q4_K", np.zeros(144, np.uint8), 32)
    with pytest.raises(core.InputError):
        core.cuda_twin_gemv("Q4_0", np.zeros(18, np.uint8), 2, 32, np.zeros((1, 32), np.float32))


def cpu_kept(logits, **kw):
    s = core.Sampler(logits.size, temperature=1.0, seed=0, **kw)
    return set(np.flatnonzero(s.probs(logits)).tolist())


SAMPLER_CASES = [
    dict(top_k=40),
    dict(top_k=40, top_p=0.9),
    dict(top_k=3000, top_p=0.95),
    dict(top_p=0.9),
    dict(top_p=0.5, min_p=0.05),
    dict(min_p=0.1),
    dict(top_k=1),
    dict(top_k=64, min_p=0.2),
]


@pytest.mark.parametrize("case", SAMPLER_CASES, ids=[str(c) for c in SAMPLER_CASES])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_twin_matches_cpu(case, temperature):
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    V = 20000
    logits = (rng.standard_normal(V) * 3).astype(np.float32)
    logits[rng.integers(0, V, 50)] = -np.inf  # banned tokens are never candidates
    logits[rng.integers(0, V, 30)] = logits[5]  # ties, broken by lower id
    kw = dict(top_k=case.get("top_k", 0), top_p=case.get("top_p", 1.0), min_p=case.get("min_p", 0.0))
    want_set = cpu_kept(logits, **kw)
    for seed in range(25):
        cpu = core.Sampler(V, temperature=temperature, seed=seed, **kw)
        u = core.Sampler(V, seed=seed).uniform()  # the first generator output, as sample() uses
        tok, status, n_kept = core.cuda_twin_sample(logits, kw["top_k"], kw["top_p"], kw["min_p"], temperature, u)
        assert status == "ok"
        assert n_kept == len(want_set)
        assert tok == cpu.sample(logits)
        assert tok in want_set


def test_sampler_twin_kept_set_exact_top_k():
    rng = np.random.default_rng(3)
    V = 5000
    logits = np.round(rng.standard_normal(V), 1).astype(np.float32)  # many ties
    for k in (1, 7, 100, 4096):
        want = cpu_kept(logits, top_k=k)
        # draw with many u: the union of the draws is a subset of the kept set, n_kept its size
        seen = set()
        for u in np.linspace(0, 1, 400, endpoint=False):
            tok, status, n_kept = core.cuda_twin_sample(logits, k, 1.0, 0.0, 1e30, float(u))
            assert status == "ok" and n_kept == len(want)
            seen.add(tok)
        assert seen <= want
        if k <= 100:
            assert seen == want  # T = 1e30: uniform weights, 400 evenly spaced u cover <= 100 tokens


def test_sampler_twin_fallback_and_no_token():
    V = 10000
    logits = np.linspace(-1, 1, V).astype(np.float32)
    # temperature only over the whole vocabulary: the device hands it to the CPU
    assert core.cuda_twin_sample(logits, 0, 1.0, 0.0, 1.0, 0.5)[1] == "fallback"
    # top-p whose cut lies beyond the first 4096 of the order: fallback too
    assert core.cuda_twin_sample(logits, 0, 0.99, 0.0, 1.0, 0.5)[1] == "fallback"
    # ... but inside it: fine
    assert core.cuda_twin_sample(logits, 0, 0.2, 0.0, 1.0, 0.5)[1] == "ok"
    banned = np.full(V, -np.inf, dtype=np.float32)
    assert core.cuda_twin_sample(banned, 10, 1.0, 0.0, 1.0, 0.5)[1] == "no_token"
    inf = logits.copy()
    inf[3] = np.inf
    assert core.cuda_twin_sample(inf, 10, 1.0, 0.0, 1.0, 0.5)[1] == "fallback"

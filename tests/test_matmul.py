"""CPU matmul driver (csrc/ops/cpu/matmul.cpp) and thread pool (csrc/runtime/thread_pool.cpp).

* matmul vs float64 NumPy on the dequantized weights (`_core.dequantize`), for every weight
  type the kernel tables support, on every ISA path this CPU has, T = 1 (GEMV) and T > 1
  (GEMM), shapes that are not multiples of the 4 x 4 tile. The bound, per output element
  y[t, r] (float64, elementwise, no fudge factor beyond what is derived here):
    activation quantization (quantized types): x is rounded to 8 bits per block of B (32 for
      Q8_0/Q8_1, 256 for Q8_K) with scale d <= amax_b / 127 * (1 + 2^-10) + 2^-24 (fp16
      rounded up; Q8_K keeps d in f32), so |x - x_q| <= d / 2 per element:
          sum_b d_b / 2 * sum_{i in b} |W[r, i]|           (x 1.001 for the rounding of x * 1/d)
    Q8_1's s = fp16(d * sum q) (Q4_1 / Q5_1): |m_w| * |s| * 2^-11 per block, with
      |m_w| <= max_b |W| and |s| <= sum_b |x| + 16 d
    float32 accumulation: (cols / 8 + 16) * 2^-22 * sum_i |W[r, i]| |x[t, i]|
  That bound is worst case (errors adding up in one direction); a kernel dropping or
  mis-scaling one block can hide under it at small sizes, so quantized types also pass a
  statistical check: with rounding errors uniform in +-d/2, the variance of y[t, r] is
  sum_b d_b^2 / 12 * sum_{i in b} W[r, i]^2, and the mean of err^2 / variance over >= 50
  outputs of >= 5 tokens must stay below 3 (it is ~1; the rows of one token share its
  rounding errors, so the outputs are not independent and the mean varies more than 1/n).
* The results for 1, 2, 3, 5 threads are bitwise identical (no reduction crosses threads and
  every split falls on tile boundaries).
* Thread pool: every task runs exactly once, a worker's exception reaches the caller (and the
  pool keeps working), several Python threads may call at once, fork() children get a working
  pool, and an idle pool burns no CPU (measured in a fresh process).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unigemma import InputError
from unigemma import _core as core

_info = core.build_info()
ISAS = list(_info["available_isas"]) + [v for v in _info.get("kernel_variants", []) if v not in _info["available_isas"]]

BLOCK = {"f32": 1, "f16": 1, "bf16": 1, "q8_0": 32, "q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32,
         "q2_k": 256, "q3_k": 256, "q4_k": 256, "q5_k": 256, "q6_k": 256}
TYPE_SIZE = {"q2_k": 84, "q3_k": 110}
# Activation format of each weight type: (block size, kind).
ACT = {"f32": None, "f16": None, "bf16": None,
       "q8_0": (32, "q8_0"), "q4_0": (32, "q8_0"), "q5_0": (32, "q8_0"),
       "q4_1": (32, "q8_1"), "q5_1": (32, "q8_1"),
       "q2_k": (256, "q8_k"), "q3_k": (256, "q8_k"), "q4_k": (256, "q8_k"), "q5_k": (256, "q8_k"),
       "q6_k": (256, "q8_k")}
# Q2_K / Q3_K have no quantizer: random blocks with finite fp16 scales at these byte offsets.
FP16_FIELDS = {"q2_k": [80, 82], "q3_k": [108]}


def _supported(t: str) -> bool:
    cols = BLOCK[t] if BLOCK[t] > 1 else 32
    try:
        core.matmul(make_weights(t, 1, cols, np.random.default_rng(0)), t, 1, cols, np.zeros((1, cols), np.float32),
                    isa="scalar")
        return True
    except InputError:
        return False


def make_weights(t: str, rows: int, cols: int, rng, scale: float = 1.0) -> np.ndarray:
    if t in FP16_FIELDS:
        nb = rows * cols // 256
        raw = rng.integers(0, 256, size=(nb, TYPE_SIZE[t]), dtype=np.uint8)
        for off in FP16_FIELDS[t]:
            d = (rng.uniform(0.001, 0.05, size=nb) * scale).astype(np.float16)
            raw[:, off:off + 2] = d.view(np.uint8).reshape(nb, 2)
        return raw.reshape(-1)
    w = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    return core.quantize(w, t)


def dequant(raw: np.ndarray, t: str, rows: int, cols: int) -> np.ndarray:
    return core.dequantize(raw, t, rows * cols).reshape(rows, cols).astype(np.float64)


def error_bound(wd: np.ndarray, x: np.ndarray, t: str) -> np.ndarray:
    x64 = x.astype(np.float64)
    rows, cols = wd.shape
    aw, ax = np.abs(wd), np.abs(x64)
    bound = (cols / 8 + 16) * 2.0**-22 * (ax @ aw.T)
    act = ACT[t]
    if act is not None:
        bs, kind = act
        nb = cols // bs
        amax = ax.reshape(-1, nb, bs).max(-1)                        # [T, nb]
        d = amax / 127 * (1 + 2.0**-10) + (0 if kind == "q8_k" else 2.0**-24)
        wsum = aw.reshape(rows, nb, bs).sum(-1)                      # [rows, nb]
        bound = bound + 0.5 * 1.001 * (d @ wsum.T)
        if kind == "q8_1":
            wmax = aw.reshape(rows, nb, bs).max(-1)
            xs = ax.reshape(-1, nb, bs).sum(-1) + 16 * d
            bound = bound + 2.0**-11 * 1.01 * (xs @ wmax.T)
    return bound + 1e-30


def predicted_variance(wd: np.ndarray, x: np.ndarray, t: str) -> np.ndarray:
    bs, _ = ACT[t]
    rows, cols = wd.shape
    nb = cols // bs
    d = np.abs(x.astype(np.float64)).reshape(-1, nb, bs).max(-1) / 127
    return (d**2 / 12) @ (wd**2).reshape(rows, nb, bs).sum(-1).T


TYPES = [t for t in BLOCK if _supported(t)]
MAIN_TYPES = [t for t in ("q4_0", "q8_0", "q4_k", "q6_k", "bf16", "f16", "f32") if t in TYPES]


def test_main_types_supported():
    assert MAIN_TYPES == ["q4_0", "q8_0", "q4_k", "q6_k", "bf16", "f16", "f32"]


def _cols_for(t: str) -> list[int]:
    b = BLOCK[t]
    if b == 256:
        return [256, 768]
    if b == 32:
        return [32, 96, 352]
    return [1, 7, 100]


def check(t, rows, cols, tokens, isa, rng, n_threads=0, xscale=1.0, wscale=1.0):
    raw = make_weights(t, rows, cols, rng, wscale)
    x = (rng.standard_normal((tokens, cols)) * xscale).astype(np.float32)
    y = core.matmul(raw, t, rows, cols, x, n_threads=n_threads, isa=isa)
    assert y.shape == (tokens, rows) and y.dtype == np.float32
    wd = dequant(raw, t, rows, cols)
    ref = x.astype(np.float64) @ wd.T
    err = np.abs(y.astype(np.float64) - ref)
    bound = error_bound(wd, x, t)
    bad = err > bound
    assert not bad.any(), (f"{t} {isa} rows={rows} cols={cols} T={tokens}: {bad.sum()} over the bound, "
                           f"worst err {err[bad].max()} vs bound {bound[bad][np.argmax(err[bad])]}")
    if ACT[t] is not None and tokens >= 5 and err.size >= 50:
        z2 = float(np.mean(err**2 / (predicted_variance(wd, x, t) + 1e-30)))
        assert z2 < 3.0, f"{t} {isa} rows={rows} cols={cols} T={tokens}: mean squared z-score {z2}"
    return raw, x, y


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("t", TYPES)
def test_matches_float64_reference(t, isa):
    rng = np.random.default_rng(zlib.crc32(f"{t}-{isa}".encode()))
    for cols in _cols_for(t):
        for rows, tokens in [(1, 1), (67, 1), (13, 2), (5, 9), (30, 19)]:
            check(t, rows, cols, tokens, isa, rng)
    # Large magnitudes. Q8_1 (Q4_1 / Q5_1 activations) keeps s = d * sum(q) in fp16, which
    # saturates once |sum of a 32-block| passes 65504 (a limit of the format, as in GGML):
    # keep those blocks below it.
    check(t, 9, _cols_for(t)[-1], 6, isa, rng, xscale=3e3 if ACT[t] is None or ACT[t][1] != "q8_1" else 300.0,
          wscale=50.0)


@pytest.mark.parametrize("isa", ISAS)
def test_1d_input_gemv(isa):
    rng = np.random.default_rng(1)
    raw = make_weights("q4_0", 11, 64, rng)
    x = rng.standard_normal(64).astype(np.float32)
    y = core.matmul(raw, "q4_0", 11, 64, x, isa=isa)
    assert y.shape == (11,)
    np.testing.assert_array_equal(y, core.matmul(raw, "q4_0", 11, 64, x[None, :], isa=isa)[0])


# Cases that give different row / token splits for each thread count; the last three span
# several L2-sized token blocks.
SPLIT_CASES = [(83, 1), (83, 6), (5, 13), (130, 17)]
BIG_CASES = [("q4_k", 9, 8192, 60), ("f32", 37, 4096, 70), ("q8_0", 21, 16384, 40)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("t", MAIN_TYPES)
def test_threads_bitwise_identical(t, isa):
    rng = np.random.default_rng(7)
    cols = _cols_for(t)[-1]
    for rows, tokens in SPLIT_CASES:
        raw = make_weights(t, rows, cols, rng)
        x = rng.standard_normal((tokens, cols)).astype(np.float32)
        y1 = core.matmul(raw, t, rows, cols, x, n_threads=1, isa=isa)
        for n in (2, 3, 5):
            yn = core.matmul(raw, t, rows, cols, x, n_threads=n, isa=isa)
            assert np.array_equal(y1, yn), (t, isa, rows, tokens, n)


@pytest.mark.parametrize("case", BIG_CASES, ids=lambda c: c[0])
def test_big_gemm_blocks(case):
    t, rows, cols, tokens = case
    isa = ISAS[-1] if "-" not in ISAS[-1] else _info["selected_isa"]
    rng = np.random.default_rng(11)
    raw, x, y1 = check(t, rows, cols, tokens, isa, rng, n_threads=1)
    for n in (2, 3):
        assert np.array_equal(y1, core.matmul(raw, t, rows, cols, x, n_threads=n, isa=isa))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TYPES), st.sampled_from(ISAS), st.integers(1, 40), st.integers(1, 3), st.integers(1, 12),
       st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_random_shapes(t, isa, rows, nblocks, tokens, n_threads, seed):
    cols = nblocks * (BLOCK[t] if BLOCK[t] > 1 else 37)
    check(t, rows, cols, tokens, isa, np.random.default_rng(seed), n_threads=n_threads)


def test_empty_shapes():
    raw = make_weights("q8_0", 3, 32, np.random.default_rng(0))
    assert core.matmul(raw, "q8_0", 3, 32, np.zeros((0, 32), np.float32)).shape == (0, 3)
    assert core.matmul(raw[:0], "q8_0", 0, 32, np.ones((2, 32), np.float32)).shape == (2, 0)


def test_validation():
    rng = np.random.default_rng(0)
    raw = make_weights("q4_0", 4, 64, rng)
    x = np.ones((2, 64), np.float32)
    with pytest.raises(InputError, match="need"):
        core.matmul(raw[:-1], "q4_0", 4, 64, x)
    with pytest.raises(InputError, match="columns"):
        core.matmul(raw, "q4_0", 4, 64, np.ones((2, 32), np.float32))
    with pytest.raises(InputError, match="multiple"):
        core.matmul(raw, "q4_0", 4, 48, np.ones((2, 48), np.float32))
    with pytest.raises(InputError, match="multiple"):
        core.matmul(make_weights("q4_k", 1, 256, rng), "q4_k", 2, 128, np.ones((1, 128), np.float32))
    with pytest.raises(InputError):
        core.matmul(raw, "nope", 4, 64, x)
    with pytest.raises(InputError, match="uint8"):
        core.matmul(raw.astype(np.int32), "q4_0", 4, 64, x)
    with pytest.raises(InputError, match="contiguous"):
        core.matmul(np.repeat(raw, 2)[::2], "q4_0", 4, 64, x)
    with pytest.raises(InputError, match="dimensions"):
        core.matmul(raw, "q4_0", 4, 64, np.ones((1, 2, 64), np.float32))
    with pytest.raises(InputError):
        core.matmul(raw, "q4_0", -1, 64, x)
    with pytest.raises(InputError):
        core.matmul(raw, "q4_0", 4, 0, x)
    with pytest.raises(InputError, match="n_threads"):
        core.matmul(raw, "q4_0", 4, 64, x, n_threads=-1)
    with pytest.raises(InputError):
        core.matmul(raw, "q4_0", 4, 64, x, isa="no-such-isa")
    with pytest.raises(InputError):  # Q8_K is an activation format, not a weight type
        core.matmul(np.zeros(292, np.uint8), "q8_k", 1, 256, np.ones((1, 256), np.float32))
    # float64 input is converted, not rejected
    y = core.matmul(raw, "q4_0", 4, 64, x.astype(np.float64))
    np.testing.assert_array_equal(y, core.matmul(raw, "q4_0", 4, 64, x))


def test_concurrent_python_threads():
    rng = np.random.default_rng(5)
    jobs = []
    for i, t in enumerate(["q4_0", "q4_k", "bf16", "q8_0"] * 2):
        cols = 512
        rows = 40 + i
        raw = make_weights(t, rows, cols, rng)
        x = rng.standard_normal((1 + 3 * (i % 3), cols)).astype(np.float32)
        jobs.append((raw, t, rows, cols, x, core.matmul(raw, t, rows, cols, x, n_threads=1)))
    errors = []

    def worker(k):
        try:
            for _ in range(15):
                raw, t, rows, cols, x, want = jobs[k]
                got = core.matmul(raw, t, rows, cols, x, n_threads=2)
                if not np.array_equal(got, want):
                    errors.append((k, "mismatch"))
        except Exception as e:  # noqa: BLE001
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


# ---------------------------------------------------------------- thread pool


def test_pool_runs_every_task_once():
    for n_tasks, n_threads in [(1, 0), (7, 2), (1000, 3), (64, 8)]:
        counts, used = core._thread_pool_selftest(n_tasks, n_threads)
        assert counts == [1] * n_tasks
        assert 1 <= used <= max(1, min(n_tasks, n_threads or core.get_threads()))
    # tasks that take a while are shared between threads
    counts, used = core._thread_pool_selftest(40, 2, sleep_us=2000)
    assert counts == [1] * 40 and used == 2


@pytest.mark.parametrize("kind,exc", [("input", InputError), ("runtime", RuntimeError)])
def test_pool_exception_propagates(kind, exc):
    for fail in (0, 5, 39):
        with pytest.raises(exc, match=f"selftest failure in task {fail}"):
            core._thread_pool_selftest(40, 3, fail_task=fail, kind=kind, sleep_us=200)
    counts, _ = core._thread_pool_selftest(50, 3)  # the pool still works
    assert counts == [1] * 50


def test_set_threads():
    old = core.get_threads()
    try:
        core.set_threads(1)
        assert core.get_threads() == 1
        core.set_threads(3)
        assert core.get_threads() == 3
        counts, used = core._thread_pool_selftest(30, 0, sleep_us=1000)
        assert counts == [1] * 30 and used <= 3
        core.set_threads(0)
        assert core.get_threads() == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                      else os.cpu_count())
        with pytest.raises(InputError):
            core.set_threads(-1)
    finally:
        core.set_threads(old)


_IDLE_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from unigemma import _core as core
    rng = np.random.default_rng(0)
    raw = core.quantize(rng.standard_normal((512, 1024)).astype(np.float32), "q4_0")
    x = rng.standard_normal((8, 1024)).astype(np.float32)
    for _ in range(20):
        core.matmul(raw, "q4_0", 512, 1024, x, n_threads=3)
        core.matmul(raw, "q4_0", 512, 1024, x[0], n_threads=3)
    time.sleep(0.05)
    c0 = time.process_time()
    time.sleep(0.4)
    burn = time.process_time() - c0
    # a fork()ed child gets a working pool of its own
    pid = os.fork()
    if pid == 0:
        y = core.matmul(raw, "q4_0", 512, 1024, x, n_threads=3)
        ok = np.array_equal(y, core.matmul(raw, "q4_0", 512, 1024, x, n_threads=1))
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print(burn, os.waitstatus_to_exitcode(status))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_idle_pool_burns_no_cpu_and_survives_fork():
    env = dict(os.environ, UNIGEMMA_SPIN_US="100")
    r = subprocess.run([sys.executable, "-c", _IDLE_SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    burn, child = r.stdout.split()
    # 0.4 s of sleeping: a spinning worker would add ~0.4 s per thread
    assert float(burn) < 0.02, f"idle pool used {burn} s of CPU in 0.4 s"
    assert child == "0"


# ---------------------------------------------------------------- benchmark plumbing


def test_bench_probes():
    assert core.bench_read_bandwidth(8 << 20, 1, 2) > 0.1
    assert core.bench_peak_gflops(1, "scalar", 1) > 0.1
    assert core.bench_peak_gflops(0, None, 1) > 0.1
    with pytest.raises(InputError):
        core.bench_read_bandwidth(100, 1, 1)
    with pytest.raises(InputError):
        core.bench_peak_gflops(1, "no-such-isa", 1)


def test_bench_kernels_json(monkeypatch, capsys):
    import json

    from unigemma import bench_kernels as bk

    monkeypatch.setattr(bk, "QUICK_SHAPES", [("tiny", 64, 256)])
    monkeypatch.setattr(bk, "QUICK_BW_BYTES", 8 << 20)
    monkeypatch.setattr(bk, "LOCAL_BW_BYTES", 8 << 20)
    monkeypatch.setattr(bk, "MIN_STREAM_BYTES", 1 << 20)
    monkeypatch.setattr(bk, "_llc_bytes", lambda: 1 << 18)
    assert bk.main(["bench", "kernels", "--quick", "--json", "--types", "q4_0,bf16", "--tokens", "8",
                    "--threads", "1", "--isa", "scalar"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"read_bandwidth_gbs", "peak_gflops", "results"}
    assert len(out["results"]) == 4
    for r in out["results"]:
        local = {"read_bandwidth_gbs"} if r["op"] == "gemv" else set()
        assert set(r) == {"op", "type", "rows", "cols", "tokens", "isa", "threads", "seconds", "gbs", "gflops"} | local
        assert r["op"] in ("gemv", "gemm") and r["isa"] == "scalar" and r["threads"] == 1
        assert r["tokens"] == (1 if r["op"] == "gemv" else 8)
        assert r["seconds"] > 0 and r["gbs"] > 0 and r["gflops"] > 0


@pytest.mark.parametrize("wtype", ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k",
                                   "q4_k", "q5_k", "q6_k"])
def test_bench_weights_are_valid_and_distinct(wtype):
    """The benchmark's random weights decode to finite, non-trivial values and no two rows
    (or copies) repeat, so a GEMV over them really streams distinct memory."""
    from unigemma import bench_kernels as bk

    rows, cols, copies = 12, 512, 2
    raw = bk.make_weights(core, wtype, rows, cols, copies, seed=3)
    vals = core.dequantize(raw, wtype, rows * copies * cols).reshape(rows * copies, cols)
    assert np.isfinite(vals).all()
    assert (np.abs(vals) > 0).mean() > 0.5
    per_row = raw.reshape(rows * copies, -1)
    assert len({bytes(r) for r in per_row}) == rows * copies


@pytest.mark.parametrize("wtype", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q5_k", "q6_k"])
def test_two_level_activations(wtype):
    """act_levels=2 (the residual of the 8-bit activation quantization is quantized and dotted
    too) on every ISA path, GEMV and GEMM: against float64 on the dequantized weights its error
    is far below the one-level error, for every activation format (Q8_0, Q8_1, Q8_K)."""
    rng = np.random.default_rng(7)
    rows, cols = 24, 512
    raw = make_weights(wtype, rows, cols, rng)
    wf = core.dequantize(raw, wtype, rows * cols).reshape(rows, cols).astype(np.float64)
    for tokens in (1, 5):
        x = rng.standard_normal((tokens, cols)).astype(np.float32)
        ref = x.astype(np.float64) @ wf.T
        scale = np.abs(ref).max()
        for isa in ISAS:
            e1 = np.abs(core.matmul(raw, wtype, rows, cols, x, isa=isa) - ref).max() / scale
            e2 = np.abs(core.matmul(raw, wtype, rows, cols, x, isa=isa, act_levels=2) - ref).max() / scale
            assert e2 < 1e-4 and e2 < e1 / 20, (isa, tokens, e1, e2)
    with pytest.raises(InputError, match="act_levels"):
        core.matmul(raw, wtype, rows, cols, x, act_levels=3)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("t", [t for t in TYPES if ACT[t] is not None])
def test_quantized_token_alone_equals_token_in_batch(t, isa):
    """Quantized types: the row kernel (decode) and every tile position (prefill, speculative
    verification) sum in the same order, so a token gets the same bits alone or in a batch."""
    rng = np.random.default_rng(zlib.crc32(f"alone-{t}-{isa}".encode()))
    cols = _cols_for(t)[-1]
    for rows, tokens in [(9, 7), (4, 5), (13, 2)]:
        raw = make_weights(t, rows, cols, rng)
        x = rng.standard_normal((tokens, cols)).astype(np.float32)
        batch = core.matmul(raw, t, rows, cols, x, isa=isa)
        for i in range(tokens):
            np.testing.assert_array_equal(batch[i], core.matmul(raw, t, rows, cols, x[i], isa=isa))

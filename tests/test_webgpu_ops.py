"""Every WebGPU kernel against the CPU backend, op by op, on fresh random inputs (the seam's
ops through _core.BackendOps), on shapes that are not multiples of the workgroup or block
sizes. Bounds:
  float inputs (F32 / F16 / BF16 weights, norms, RoPE, element-wise, attention over an F32
  cache): normalized MSE against the CPU <= 1e-7 (nMSE = sum((a - b)^2) / sum(b^2));
  quantized weights: the GPU's error against float64 (the decoded weights times x in float64)
  is at most the CPU kernel's own error against float64 (the CPU rounds activations to 8 bits,
  the GPU keeps them float32), and the GPU result is within float32 summation of float64
  (nMSE <= 1e-9).
Row invariance (what speculative verify relies on): a token's row is bitwise the same alone
and inside a batch."""
from __future__ import annotations

import numpy as np
import pytest

from unigemma import _core, dequantize, quantize
from webgpu_device import adapter

OPS = _core.BackendOps

TYPE_IDS = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "q4_k": 12, "q5_k": 13,
            "q6_k": 14, "bf16": 30}
BLOCK = {"f32": 1, "f16": 1, "bf16": 1, "q4_0": 32, "q4_1": 32, "q5_0": 32, "q5_1": 32, "q8_0": 32,
         "q4_k": 256, "q5_k": 256, "q6_k": 256}
FLOAT = {"f32", "f16", "bf16"}


@pytest.fixture(scope="module", autouse=True)
def gpu():
    return adapter()


def nmse(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(((a - b) ** 2).sum() / max((b ** 2).sum(), 1e-30))


def weight(rng, name: str, rows: int, cols: int):
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    raw = np.asarray(quantize(w, name)).reshape(rows, -1)
    ref = np.asarray(dequantize(raw.reshape(-1), name, rows * cols), np.float64).reshape(rows, cols)
    return raw, ref


@pytest.mark.parametrize("name", sorted(TYPE_IDS))
def test_matmul_every_weight_type(name):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    cols = {1: 45, 32: 96, 256: 512}[BLOCK[name]]
    rows = 37  # not a multiple of anything the kernels tile by
    raw, ref = weight(rng, name, rows, cols)
    x = rng.standard_normal((9, cols)).astype(np.float32)
    want = x.astype(np.float64) @ ref.T
    gpu = OPS.matmul("webgpu", raw, TYPE_IDS[name], cols, x)
    cpu = OPS.matmul("cpu", raw, TYPE_IDS[name], cols, x)
    assert gpu.shape == (9, rows)
    if name in FLOAT:
        assert nmse(gpu, cpu) <= 1e-7, nmse(gpu, cpu)
    else:
        assert nmse(gpu, want) <= max(nmse(cpu, want), 1e-12), (nmse(gpu, want), nmse(cpu, want))
    assert nmse(gpu, want) <= 1e-9
    # decode == batch: each token alone gives its batch row bit for bit
    for t in (0, 4, 8):
        alone = OPS.matmul("webgpu", raw, TYPE_IDS[name], cols, x[t:t + 1])
        np.testing.assert_array_equal(alone[0], gpu[t])


def test_matmul_rows_picks_rows():
    rng = np.random.default_rng(1)
    raw, ref = weight(rng, "q6_k", 300, 256)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    ids = np.array([299, 0, 17, 17, 150], np.int32)
    gpu = OPS.matmul("webgpu", raw, TYPE_IDS["q6_k"], 256, x, ids)
    full = OPS.matmul("webgpu", raw, TYPE_IDS["q6_k"], 256, x)
    np.testing.assert_array_equal(gpu, full[:, ids])
    with pytest.raises(_core.InputError):
        OPS.matmul("webgpu", raw, TYPE_IDS["q6_k"], 256, x, np.array([300], np.int32))


@pytest.mark.parametrize("name", ["f32", "f16", "bf16", "q8_0", "q4_0", "q5_1", "q4_k", "q6_k"])
def test_embed_rows_and_soft_tokens(name):
    rng = np.random.default_rng(7)
    cols = {1: 45, 32: 96, 256: 256}[BLOCK[name]]
    raw, ref = weight(rng, name, 50, cols)
    tokens = np.array([3, 49, 0, 3, 20], np.int32)
    kinds = np.array([0, 1, 0, 2, 0], np.int8)
    embd = rng.standard_normal((5, cols)).astype(np.float32)
    gpu = OPS.embed("webgpu", raw, TYPE_IDS[name], cols, tokens, 1.7, kinds, embd)
    cpu = OPS.embed("cpu", raw, TYPE_IDS[name], cols, tokens, 1.7, kinds, embd)
    assert nmse(gpu, cpu) <= 1e-12
    np.testing.assert_array_equal(gpu[1], embd[1])  # soft tokens: the row itself, unscaled
    np.testing.assert_allclose(gpu[0], ref[3] * 1.7, rtol=1e-6, atol=1e-6)


ROW_SHAPES = [(1, 7), (5, 300), (3, 2049)]


@pytest.mark.parametrize("rows,cols", ROW_SHAPES)
def test_rowwise_ops_match_cpu(rows, cols):
    rng = np.random.default_rng(rows * 1000 + cols)
    x = rng.standard_normal((rows, cols)).astype(np.float32) * 3
    y = rng.standard_normal((rows, cols)).astype(np.float32)
    w = (rng.random(cols) + 0.5).astype(np.float32)
    b = rng.standard_normal(cols).astype(np.float32)
    cases = [
        dict(op="rms_norm", w=w), dict(op="rms_norm"), dict(op="add", y=y), dict(op="scale", s=0.37),
        dict(op="copy", y=y), dict(op="gelu_tanh_mul", y=y), dict(op="softcap", s=5.0), dict(op="add_bias", w=b),
        dict(op="layer_norm", w=w, b=b), dict(op="layer_norm"),
    ]
    for c in cases:
        gpu = OPS.rowwise("webgpu", x=x, **c)
        cpu = OPS.rowwise("cpu", x=x, **c)
        assert nmse(gpu, cpu) <= 1e-7, (c["op"], nmse(gpu, cpu))


def test_layer_norm_f64_pixels_with_permutation():
    rng = np.random.default_rng(3)
    cols = 48 * 48 * 3
    x = rng.random((4, cols)).astype(np.float32)  # pixels: mean far from 0
    src = rng.permutation(cols).astype(np.int32)
    w = (rng.random(cols) + 0.5).astype(np.float32)
    b = rng.standard_normal(cols).astype(np.float32)
    gpu = OPS.rowwise("webgpu", "layer_norm_f64", x, w=w, b=b, src=src)
    cpu = OPS.rowwise("cpu", "layer_norm_f64", x, w=w, b=b, src=src)
    assert nmse(gpu, cpu) <= 1e-7, nmse(gpu, cpu)


@pytest.mark.parametrize("hd", [18, 64, 256, 512])
def test_head_norm_rope(hd):
    rng = np.random.default_rng(hd)
    heads, rows = 3, 4
    x = rng.standard_normal((rows, heads * hd)).astype(np.float32)
    w = (rng.random(hd) + 0.5).astype(np.float32)
    pos = np.array([0, 5, 1000, 70000], np.int64)
    inv = (1.0 / (10000.0 ** (np.arange(hd // 2) / (hd // 2)))).astype(np.float32)
    inv[hd // 4:] = 0.0  # proportional RoPE: the tail of the frequencies is zero
    for kw in (dict(w=w, pos=pos, inv_freq=inv), dict(pos=pos, inv_freq=inv), dict(w=w), dict()):
        gpu = OPS.rowwise("webgpu", "head_norm_rope", x, head_dim=hd, **kw)
        cpu = OPS.rowwise("cpu", "head_norm_rope", x, head_dim=hd, **kw)
        assert nmse(gpu, cpu) <= 1e-7, (kw.keys(), nmse(gpu, cpu))


def test_add_table_rows():
    rng = np.random.default_rng(4)
    table = rng.standard_normal((10, 33)).astype(np.float32)
    x = rng.standard_normal((6, 33)).astype(np.float32)
    ra = np.array([0, 1, 9, 3, 3, 2], np.int64)
    rb = np.array([9, 8, 0, 3, 1, 2], np.int64)
    pos = np.concatenate([ra, rb])
    gpu = OPS.rowwise("webgpu", "add_table_rows", x, w=table.reshape(-1), pos=pos)
    cpu = OPS.rowwise("cpu", "add_table_rows", x, w=table.reshape(-1), pos=pos)
    np.testing.assert_array_equal(gpu, cpu)


ATT = [
    # n_head, n_kv, hd, n_keys, n_q, window, kv type
    (4, 2, 64, 70, 3, 0, "f32"),
    (2, 1, 256, 40, 2, 0, "f32"),
    (8, 8, 40, 130, 5, 0, "f32"),
    (3, 1, 512, 20, 1, 0, "f32"),
    (4, 2, 64, 150, 4, 48, "f32"),   # window shorter than the prompt
    (4, 2, 64, 70, 3, 0, "f16"),
    (2, 2, 18, 33, 2, 0, "f16"),     # odd half-words per head row
    (4, 2, 64, 70, 3, 0, "q8_0"),
    (2, 1, 256, 45, 2, 16, "q8_0"),
]


@pytest.mark.parametrize("n_head,n_kv,hd,n_keys,n_q,window,kvt", ATT)
def test_attention_matches_cpu(n_head, n_kv, hd, n_keys, n_q, window, kvt):
    rng = np.random.default_rng(n_keys * hd + n_head)
    P = n_keys + n_q  # keys 0 .. n_keys-1 then the queries' own positions
    k = rng.standard_normal((P, n_kv * hd)).astype(np.float32)
    v = rng.standard_normal((P, n_kv * hd)).astype(np.float32)
    q = rng.standard_normal((n_q, n_head * hd)).astype(np.float32) * 0.3
    kw = dict(k=k, v=v, kpos=np.arange(P, dtype=np.int64), q=q, n_kv_head=n_kv, head_dim=hd, n_head=n_head,
              pos0=n_keys, scale=1.0 / np.sqrt(hd), window=window, sliding=window > 0, k_type=kvt, v_type=kvt,
              n_ubatch=P)
    gpu = OPS.attention("webgpu", **kw)
    cpu = OPS.attention("cpu", **kw)
    # F32 cache: float32 rounding only; F16 / Q8_0: both sides read the same stored values
    # (the GPU quantizes as the CPU does), up to the rounding of a rare tie
    assert nmse(gpu, cpu) <= (1e-7 if kvt == "f32" else 1e-6), nmse(gpu, cpu)


def test_attention_sliding_ring_wraps():
    # positions past the ring's size: slots are reused, the window still reads the right keys
    rng = np.random.default_rng(11)
    n_kv, hd, n_head, window, n_ubatch = 1, 64, 2, 16, 8
    cap = window + n_ubatch + 64
    P = cap + 50
    k = rng.standard_normal((P, hd)).astype(np.float32)
    v = rng.standard_normal((P, hd)).astype(np.float32)
    q = rng.standard_normal((1, n_head * hd)).astype(np.float32)
    tail = np.arange(P - window, P, dtype=np.int64)  # store only what the ring keeps: the window
    kw = dict(k=k[tail], v=v[tail], kpos=tail, q=q, n_kv_head=n_kv, head_dim=hd, n_head=n_head, pos0=P - 1,
              window=window, sliding=True, n_ubatch=n_ubatch, n_ctx=4096)
    gpu = OPS.attention("webgpu", **kw)
    cpu = OPS.attention("cpu", **kw)
    assert nmse(gpu, cpu) <= 1e-7


def test_attention_image_block_and_range():
    rng = np.random.default_rng(12)
    n_kv, hd, n_head, P = 2, 64, 4, 30
    k = rng.standard_normal((P, n_kv * hd)).astype(np.float32)
    v = rng.standard_normal((P, n_kv * hd)).astype(np.float32)
    q = rng.standard_normal((6, n_head * hd)).astype(np.float32)
    key_end = np.array([24, 27, 27, 27, 28, 29], np.int64)  # rows 1-3: one bidirectional block
    base = dict(k=k, v=v, kpos=np.arange(P, dtype=np.int64), q=q, n_kv_head=n_kv, head_dim=hd, n_head=n_head,
                pos0=24, window=20, sliding=True, n_ubatch=P)
    gpu = OPS.attention("webgpu", key_end=key_end, **base)
    cpu = OPS.attention("cpu", key_end=key_end, **base)
    assert nmse(gpu, cpu) <= 1e-7
    gpu = OPS.attention("webgpu", lo=3, hi=17, **base)
    cpu = OPS.attention("cpu", lo=3, hi=17, **base)
    assert nmse(gpu, cpu) <= 1e-7


def test_refused_allocation_is_a_device_error(gpu):
    too_big = int(gpu["max_buffer_size"]) // 4 + 1024
    with pytest.raises(_core.DeviceError, match="largest buffer|refused"):
        OPS.alloc("webgpu", too_big)
    assert OPS.alloc("webgpu", 1000) == 1000  # and the device goes on


def test_unsupported_weight_type_names_the_op():
    rng = np.random.default_rng(2)
    raw = np.asarray(quantize(rng.standard_normal((4, 256)).astype(np.float32), "q2_k")).reshape(4, -1) \
        if _can("q2_k") else None
    if raw is None:
        raw = np.zeros((4, 84), np.uint8)  # one Q2_K block per row
    with pytest.raises(_core.ModelError, match=r"\[webgpu.matmul\].*Q2_K"):
        OPS.matmul("webgpu", raw, 10, 256, np.zeros((1, 256), np.float32))


def _can(name: str) -> bool:
    try:
        quantize(np.zeros((1, 256), np.float32), name)
        return True
    except _core.InputError:
        return False


def test_one_forward_past_the_parameter_and_upload_pages():
    """More dispatches in one submission than a parameter page holds (4096) and more host data
    than an upload page (8 MiB): the arenas move on to further pages and every op still reads
    its own parameters and data (the CPU, running the same ops in the same order, agrees
    bitwise)."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((1, 7)).astype(np.float32)
    y = rng.standard_normal((1, 7)).astype(np.float32) * 1e-3
    gpu = OPS.rowwise("webgpu", "add", x, y=y, repeat=4500)
    np.testing.assert_array_equal(gpu, OPS.rowwise("cpu", "add", x, y=y, repeat=4500))
    table = rng.standard_normal((4, 128)).astype(np.float32)
    x = rng.standard_normal((2000, 128)).astype(np.float32)  # 1 MiB of summed rows per call
    pos = rng.integers(0, 4, size=4000).astype(np.int64)
    gpu = OPS.rowwise("webgpu", "add_table_rows", x, w=table.reshape(-1), pos=pos, repeat=11)
    np.testing.assert_array_equal(gpu, OPS.rowwise("cpu", "add_table_rows", x, w=table.reshape(-1), pos=pos, repeat=11))

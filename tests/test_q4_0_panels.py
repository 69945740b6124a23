"""Q4_0 weights repacked into 16-row panels (csrc/ops/cpu/q4_0_panels.h).

* Kernel: every ISA path that has a panel kernel gives bitwise the scalar reference's result;
  the result is within the float64 error bound of the dequantized weights times the input
  (the same bound as the GGUF row kernels, test_matmul.error_bound) and close to the GGUF row
  kernel on the same quantized activations.
* A token's result does not depend on the batch it is in, nor on the thread count (what makes
  speculative verification of a Q4_0 model agree with decoding to the bit).
* Model: a Q4_0 model is repacked at load when the selected path has a panel kernel; logits
  with and without repacking agree to rounding; greedy decoding with a drafter equals plain
  greedy decoding on a Q4_0 model.
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from test_matmul import ISAS, dequant, error_bound

from unigemma import InputError
from unigemma import _core as core

PANEL_ISAS = [i for i in ISAS if core.has_q4_0_panels(i)]


def _case(rows, cols, tokens, seed):
    rng = np.random.default_rng(seed)
    raw = core.quantize(rng.standard_normal((rows, cols)).astype(np.float32), "q4_0")
    x = rng.standard_normal((tokens, cols)).astype(np.float32)
    return raw, x


SHAPES = [(16, 32, 1), (1, 64, 1), (37, 96, 3), (50, 256, 8), (64, 512, 9), (33, 3840, 17), (160, 160, 40)]


def test_paths_with_a_panel_kernel():
    assert "scalar" in PANEL_ISAS
    for isa in ("avx2", "avx512", "avx512-novnni"):
        if isa in ISAS:
            assert isa in PANEL_ISAS, f"{isa} has no Q4_0 panel kernel"


@pytest.mark.parametrize("isa", PANEL_ISAS)
@pytest.mark.parametrize("rows,cols,tokens", SHAPES)
def test_kernel_matches_scalar_bitwise_and_float64_bound(isa, rows, cols, tokens):
    raw, x = _case(rows, cols, tokens, zlib.crc32(f"{rows}-{cols}-{tokens}".encode()))
    p = core.pack_q4_0_panels(raw, rows, cols)
    assert p.nbytes == -(-rows // 16) * 16 * cols // 32 * 18
    y = core.matmul_q4_0_panels(p, rows, cols, x, isa=isa)
    ref = core.matmul_q4_0_panels(p, rows, cols, x, isa="scalar")
    np.testing.assert_array_equal(y, ref)
    wd = dequant(raw, "q4_0", rows, cols)
    exact = x.astype(np.float64) @ wd.T
    err = np.abs(y - exact)
    bound = error_bound(wd, x, "q4_0")
    assert (err <= bound).all(), f"worst err/bound {float((err / bound).max())}"
    # the GGUF row kernel dots the same int8 activations: only float rounding order differs
    row = core.matmul(raw, "q4_0", rows, cols, x, isa=isa)
    scale = np.abs(x).max() * np.abs(wd).sum(1).max()
    assert float(np.abs(row - y).max()) <= 1e-6 * scale


@pytest.mark.parametrize("rows,cols,tokens", [(83, 256, 20), (16, 3840, 9), (130, 512, 33)])
def test_batch_and_thread_invariance(rows, cols, tokens):
    raw, x = _case(rows, cols, tokens, 7)
    p = core.pack_q4_0_panels(raw, rows, cols)
    full = core.matmul_q4_0_panels(p, rows, cols, x, n_threads=2)
    np.testing.assert_array_equal(full, core.matmul_q4_0_panels(p, rows, cols, x, n_threads=1))
    for t in range(tokens):
        np.testing.assert_array_equal(full[t], core.matmul_q4_0_panels(p, rows, cols, x[t:t + 1])[0])
    for a, b in [(0, 5), (3, 11), (tokens - 2, tokens)]:
        np.testing.assert_array_equal(full[a:b], core.matmul_q4_0_panels(p, rows, cols, x[a:b], n_threads=2))


def test_padding_rows_do_not_leak():
    raw, x = _case(17, 64, 2, 3)
    p = core.pack_q4_0_panels(raw, 17, 64)
    assert p.nbytes == 2 * 16 * 2 * 18
    assert not p.reshape(2, 2, 288)[1, :, 256 + 2:].any(), "rows past the end must have zero scales"
    y = core.matmul_q4_0_panels(p, 17, 64, x)
    assert y.shape == (2, 17)
    np.testing.assert_array_equal(y[:, :16], core.matmul_q4_0_panels(p[:2 * 288], 16, 64, x))


def test_errors():
    raw, x = _case(16, 64, 1, 0)
    p = core.pack_q4_0_panels(raw, 16, 64)
    with pytest.raises(InputError, match="pack_q4_0_panels"):
        core.pack_q4_0_panels(raw[:-1], 16, 64)
    with pytest.raises(InputError, match="block size 32"):
        core.pack_q4_0_panels(raw, 32, 32 + 16)
    with pytest.raises(InputError, match="smaller"):
        core.matmul_q4_0_panels(p[:-1], 16, 64, x)
    with pytest.raises(InputError, match="tokens, cols"):
        core.matmul_q4_0_panels(p, 16, 64, np.zeros((1, 32), np.float32))
    with pytest.raises(InputError, match="negative thread"):
        core.matmul_q4_0_panels(p, 16, 64, x, n_threads=-1)
    assert core.matmul_q4_0_panels(p, 16, 64, np.zeros((0, 64), np.float32)).shape == (0, 16)


# ---------------------------------------------------------------- model level

@pytest.fixture(scope="module")
def q4_0_model(hf_ckpt, tmp_path_factory):
    from unigemma.convert import convert

    root = tmp_path_factory.mktemp("q4_0")
    convert(hf_ckpt("default"), outtype="q4_0", out_prefix=root / "default", progress=False)
    return str(root / "default.gguf")


def _load(path, repack: bool):
    old = os.environ.get("UNIGEMMA_REPACK")
    os.environ["UNIGEMMA_REPACK"] = "1" if repack else "0"
    try:
        return core.TextModel(path)
    finally:
        if old is None:
            del os.environ["UNIGEMMA_REPACK"]
        else:
            os.environ["UNIGEMMA_REPACK"] = old


def test_model_repacks_q4_0_and_logits_agree(q4_0_model):
    import gguf

    r = gguf.GGUFReader(q4_0_model)
    q4 = [t for t in r.tensors if t.tensor_type == gguf.GGMLQuantizationType.Q4_0 and t.name.startswith("blk.")]
    assert q4, "the q4_0 conversion has no Q4_0 layer matrices"
    packed, plain = _load(q4_0_model, True), _load(q4_0_model, False)
    assert plain.panel_bytes == 0
    if not core.has_q4_0_panels():
        assert packed.panel_bytes == 0
        return
    assert packed.panel_bytes >= sum(int(t.n_bytes) for t in q4)
    ids = np.random.default_rng(5).integers(300, 3000, size=40).astype(np.int32)
    a = core.Context(packed, n_ctx=64).eval(ids, all_logits=True)
    b = core.Context(plain, n_ctx=64).eval(ids, all_logits=True)
    assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max()
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.95


def test_q4_0_model_decode_equals_verify_batch(q4_0_model):
    """Logits of tokens fed one at a time equal those of the same tokens in one batch: the
    property that keeps greedy decoding with a drafter identical to plain greedy."""
    import unigemma
    from unigemma.speculative import OracleDrafter

    m = _load(q4_0_model, True)
    ids = np.random.default_rng(9).integers(300, 3000, size=12).astype(np.int32)
    ctx = core.Context(m, n_ctx=64, k_type="f32", v_type="f32")
    ctx.eval(ids[:4])
    batch = ctx.eval(ids[4:], all_logits=True)
    ctx2 = core.Context(m, n_ctx=64, k_type="f32", v_type="f32")
    ctx2.eval(ids[:4])
    single = np.stack([ctx2.eval(ids[i:i + 1])[0] for i in range(4, 12)])
    np.testing.assert_array_equal(batch, single)

    model = unigemma.Model(q4_0_model, n_ctx=256, kv_type="f16")
    prompt = [2] + ids.tolist()
    base = model.generate(prompt, max_tokens=40, stop_tokens=[])
    model.set_drafter(OracleDrafter(base.tokens, len(prompt), model.n_vocab, model.hparams["n_embd"], accept_rate=0.6,
                                    seed=1), draft_tokens=4)
    model.reset()
    assert model.generate(prompt, max_tokens=40, stop_tokens=[]).tokens == base.tokens

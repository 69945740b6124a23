"""Multimodal projector (`_core.MMProjector`): the Gemma 4 Unified vision and audio embedders
against transformers' `get_image_features` / `get_audio_features` on tiny random checkpoints
(tests/fixtures/tiny_checkpoints.py: D_v 32, the real 6912-value patch and 1120-entry position
table), for our converter's files (F32 / F16 / Q8_0) and for a llama.cpp-converted file
(committed: tests/fixtures/tiny-default-llamacpp-mmproj-f32.gguf, see the README there);
then every malformed file and bad input raises a clear error.

Bounds (relative L2 over the whole output):
- F32 weights: < 1e-4 (measured ~4e-7: float32 rounding only).
- F16 / Q8_0 weights against the original float32 model: the weights' own rounding dominates:
  F16 < 1e-3 (measured ~2.6e-4), Q8_0 < 2e-2 (measured ~5-6e-3).
- The same files against transformers running the file's own dequantized weights: F16 < 1e-5
  (measured ~6e-7), Q8_0 < 2e-4 (measured ~2.4e-5: activation rounding, two 8-bit levels).
"""
from __future__ import annotations

import copy
from pathlib import Path

import gguf
import numpy as np
import pytest

import unigemma
from unigemma import _core as core
from unigemma.convert import convert

HERE = Path(__file__).resolve().parent
LLAMA_CPP_MMPROJ = HERE / "fixtures" / "tiny-default-llamacpp-mmproj-f32.gguf"
P = 48          # model patch in pixels
N_IN = P * P * 3
POSEMB = 1120


@pytest.fixture(scope="module")
def mmproj_of(hf_ckpt, tmp_path_factory):
    """mmproj_of(name, outtype) -> path of our converter's mmproj file of a tiny checkpoint."""
    root = tmp_path_factory.mktemp("mmproj")
    cache = {}

    def get(name: str, outtype: str = "f32") -> str:
        if (name, outtype) not in cache:
            res = convert(hf_ckpt(name), outtype=outtype, out_prefix=root / f"{name}-{outtype}", progress=False)
            cache[(name, outtype)] = str(res.mmproj)
        return cache[(name, outtype)]

    return get


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def hf_image(model, px: np.ndarray, pos: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model.get_image_features(torch.from_numpy(px)[None], torch.from_numpy(pos.astype(np.int64))[None])
    return out.pooler_output[0].float().numpy()   # pad rows (-1, -1) are dropped by the reference


def hf_audio(model, frames: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model.model.get_audio_features(torch.from_numpy(frames)[None])
    return out.pooler_output[0].float().numpy()


def image_case(rng, rows: int, cols: int, pad: int, shuffle_pad: bool = False):
    """Random [0, 1] patches of a rows x cols grid (row-major, as the processor orders them),
    followed by `pad` padding patches at (-1, -1) (or with the pads spread among them)."""
    n = rows * cols
    px = rng.random((n + pad, N_IN), dtype=np.float32)
    pos = np.array([(c, r) for r in range(rows) for c in range(cols)] + [(-1, -1)] * pad, dtype=np.int32)
    if shuffle_pad:
        perm = rng.permutation(n + pad)
        px, pos = px[perm], pos[perm]
    return px, pos


# grids: a 1-token image, random grids with padding, a 1120-token strip and a 32x35 grid (1120)
GRIDS = [(1, 1, 0), (1, 1, 5), (7, 5, 3), (12, 23, 4), (1, 1120, 0), (32, 35, 0)]
SHORT_GRIDS = [(1, 1, 0), (7, 5, 3), (32, 35, 0)]


def check_file(path: str, model, bound: float, seed: int, grids=GRIDS) -> dict:
    p = core.MMProjector(path)
    rng = np.random.default_rng(seed)
    worst = {}
    for rows, cols, pad in grids + [(int(rng.integers(1, 30)), int(rng.integers(1, 30)), int(rng.integers(0, 9)))]:
        px, pos = image_case(rng, rows, cols, pad, shuffle_pad=pad > 0)
        ours = p.embed_image(px, pos)
        ref = hf_image(model, px, pos)
        assert ours.dtype == np.float32 and ours.shape == (rows * cols, p.hidden_size)
        worst["image"] = max(worst.get("image", 0.0), rel_l2(ours, ref))
    for n in (1, 7, 750):   # 750 frames = 30 s
        frames = (rng.standard_normal((n, 640)) * rng.uniform(0.01, 0.5)).astype(np.float32)
        frames[-1, :] = 0.0 if n > 1 else frames[-1]   # digital silence: RMSNorm of zeros stays finite
        ours = p.embed_audio(frames)
        assert ours.dtype == np.float32 and ours.shape == (n, p.hidden_size)
        worst["audio"] = max(worst.get("audio", 0.0), rel_l2(ours, hf_audio(model, frames)))
    for k, v in worst.items():
        assert v < bound, f"{path}: {k} rel L2 {v:.3g} >= {bound}"
    return worst


@pytest.mark.parametrize("name", ["default", "alt_layout"])
def test_f32_matches_transformers(name, mmproj_of, hf_model):
    p = core.MMProjector(mmproj_of(name))
    cfg = hf_model(name).config
    assert (p.has_vision, p.has_audio) == (True, True)
    assert p.hidden_size == cfg.text_config.hidden_size
    assert (p.vision_embed_dim, p.patch_size, p.posemb_size, p.patch_values) == (32, 48, POSEMB, N_IN)
    assert p.audio_frame_size == 640
    assert p.vision_rms_norm_eps == pytest.approx(1e-6) and p.audio_rms_norm_eps == pytest.approx(1e-6)
    worst = check_file(mmproj_of(name), hf_model(name), 1e-4, seed=1)
    print(name, "f32", worst)


def _hf_with_file_weights(model, path: str):
    """A copy of the reference model carrying the file's dequantized projector weights."""
    import torch

    f = core.GGUFFile(path)
    m = copy.deepcopy(model)
    ev, ea = m.model.embed_vision, m.model.embed_audio
    w = f.tensor_float("v.patch_embd.weight")                       # (D, 6912), CHW columns
    w = w.reshape(w.shape[0], 3, P, P).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)   # -> HWC
    with torch.no_grad():
        ev.patch_dense.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
        ev.multimodal_embedder.embedding_projection.weight.copy_(
            torch.from_numpy(f.tensor_float("mm.input_projection.weight")))
        ea.embedding_projection.weight.copy_(torch.from_numpy(f.tensor_float("mm.a.input_projection.weight")))
    return m


@pytest.mark.parametrize("outtype,loose,tight", [("f16", 1e-3, 1e-5), ("q8_0", 2e-2, 2e-4)])
def test_quantized(outtype, loose, tight, mmproj_of, hf_model):
    """Against the float32 model: within the weights' rounding (loose). Against the reference
    running the file's own dequantized weights: only activation rounding is left (tight)."""
    path = mmproj_of("default", outtype)
    w1 = check_file(path, hf_model("default"), loose, seed=2, grids=SHORT_GRIDS)
    w2 = check_file(path, _hf_with_file_weights(hf_model("default"), path), tight, seed=3, grids=SHORT_GRIDS)
    print(outtype, "vs f32 model", w1, "vs file weights", w2)


def test_llama_cpp_file_matches_transformers(hf_model):
    worst = check_file(str(LLAMA_CPP_MMPROJ), hf_model("default"), 1e-4, seed=4)
    print("llama.cpp f32", worst)


def test_llama_cpp_fixture_is_the_session_checkpoint(hf_model, mmproj_of):
    """The committed llama.cpp file holds exactly the weights of the `default` fixture (seed 0):
    a change of tiny_checkpoints.py that alters them fails here, not as a parity mystery.
    It also holds the same tensor data as our converter's F32 file, bit for bit."""
    sd = {k: v.float().numpy() for k, v in hf_model("default").state_dict().items()}
    f = core.GGUFFile(str(LLAMA_CPP_MMPROJ))
    assert f["general.architecture"] == "clip"
    v = "model.embed_vision."
    for gname, hname in [("v.patch_norm.2.weight", v + "patch_ln2.weight"),
                         ("v.patch_embd.bias", v + "patch_dense.bias"),
                         ("v.patch_norm.3.bias", v + "pos_norm.bias"),
                         ("mm.input_projection.weight", v + "multimodal_embedder.embedding_projection.weight"),
                         ("mm.a.input_projection.weight", "model.embed_audio.embedding_projection.weight")]:
        np.testing.assert_array_equal(f.tensor_float(gname), sd[hname], err_msg=gname)
    # the permuted ones (reference §3.3)
    w = f.tensor_float("v.patch_embd.weight").reshape(32, 3, P, P).transpose(0, 2, 3, 1).reshape(32, -1)
    np.testing.assert_array_equal(w, sd[v + "patch_dense.weight"])
    pos = f.tensor_float("v.position_embd.weight")                  # (2, P, D): x table, then y
    np.testing.assert_array_equal(pos.transpose(1, 0, 2), sd[v + "pos_embedding"])
    ours = core.GGUFFile(mmproj_of("default"))
    assert sorted(t.name for t in ours.tensors) == sorted(t.name for t in f.tensors)
    for t in f.tensors:
        assert ours.tensor_info(t.name).type == t.type == "F32"
        assert bytes(ours.tensor_bytes(t.name)) == bytes(f.tensor_bytes(t.name)), t.name


def test_threads_and_chunks_give_identical_rows(mmproj_of):
    """Results do not depend on the thread count, nor on a patch's place in the batch (chunks of
    256, padding interleaved)."""
    path = mmproj_of("default")
    rng = np.random.default_rng(5)
    px, pos = image_case(rng, 20, 30, 10, shuffle_pad=True)
    a = core.MMProjector(path, n_threads=1).embed_image(px, pos)
    b = core.MMProjector(path, n_threads=2).embed_image(px, pos)
    np.testing.assert_array_equal(a, b)
    keep = (pos != -1).all(1)
    np.testing.assert_array_equal(core.MMProjector(path).embed_image(px[keep][256:260], pos[keep][256:260]), a[256:260])
    # padding alone -> no rows; empty input -> no rows
    p = core.MMProjector(path)
    assert p.embed_image(px[:0], pos[:0]).shape == (0, p.hidden_size)
    assert p.embed_image(np.zeros((3, N_IN), np.float32), np.full((3, 2), -1)).shape == (0, p.hidden_size)
    assert p.embed_audio(np.zeros((0, 640), np.float32)).shape == (0, p.hidden_size)
    # other input dtypes are converted (float64 / float16 pixels, int64 / uint16 positions, lists)
    ref = p.embed_image(px[:4], pos[:4])
    np.testing.assert_array_equal(p.embed_image(px[:4].astype(np.float64), pos[:4].astype(np.int64)), ref)
    np.testing.assert_array_equal(p.embed_image(px[:4].tolist(), pos[:4].tolist()), ref)
    if (pos[:4] >= 0).all():
        np.testing.assert_array_equal(p.embed_image(px[:4], pos[:4].astype(np.uint16)), ref)


# ------------------------------------------------------------------------------------------
# Errors: malformed files
# ------------------------------------------------------------------------------------------
def rewrite(src: str, dst: Path, drop_keys=(), keys=None, drop_tensors=(), tensors=None) -> str:
    """Copy an F32 GGUF with keys / tensors dropped, replaced or added (keys: name -> (value, type))."""
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(dst), arch)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or name in drop_keys:
            continue
        if keys and name in keys:
            continue
        sub = f.types[1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), f.types[0], sub)
    for name, (val, vt) in (keys or {}).items():
        if name == "general.architecture":
            continue
        w.add_key_value(name, val, vt)
    tensors = tensors or {}
    for t in r.tensors:
        if t.name in drop_tensors:
            continue
        w.add_tensor(t.name, tensors.pop(t.name) if t.name in tensors else np.array(t.data))
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(dst)


S, U32, F32, B = (gguf.GGUFValueType.STRING, gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32,
                  gguf.GGUFValueType.BOOL)
BAD_FILES = {
    "missing tensor": (dict(drop_tensors=["v.patch_norm.3.bias"]), core.GGUFError,
                       "[mmproj] missing required tensor 'v.patch_norm.3.bias'"),
    "missing audio tensor": (dict(drop_tensors=["mm.a.input_projection.weight"]), core.GGUFError,
                             "missing required tensor 'mm.a.input_projection.weight'"),
    "projection shape": (dict(tensors={"mm.input_projection.weight": np.zeros((64, 33), np.float32)}),
                         core.GGUFError, "tensor 'mm.input_projection.weight': shape [33, 64] disagrees"),
    "embedding_length key": (dict(keys={"clip.vision.embedding_length": (16, U32)}), core.GGUFError,
                             "tensor 'v.patch_embd.weight': shape [6912, 32] disagrees with the keys, expected [6912, 16]"),
    "patch size key": (dict(keys={"clip.vision.patch_size": (14, U32)}), core.GGUFError,
                       "tensor 'v.patch_norm.1.weight': shape [6912] disagrees with the keys, expected [5292]"),
    "pos table": (dict(tensors={"v.position_embd.weight": np.zeros((3, POSEMB, 32), np.float32)}), core.GGUFError,
                  "tensor 'v.position_embd.weight': shape [32, 1120, 3] disagrees"),
    "posemb key": (dict(keys={"unigemma.vision.mm_posemb_size": (280, U32)}), core.GGUFError,
                   "'unigemma.vision.mm_posemb_size' disagrees"),
    "norm dtype": (dict(tensors={"v.patch_norm.2.weight": np.ones(32, np.float16)}), core.ModelError,
                   "tensor 'v.patch_norm.2.weight': type F16, expected F32"),
    "projector type": (dict(keys={"clip.vision.projector_type": ("gemma3", S)}), core.ModelError,
                       "vision projector type 'gemma3' is not supported"),
    "audio projector type": (dict(keys={"clip.audio.projector_type": ("qwen2a", S)}), core.ModelError,
                             "audio projector type 'qwen2a' is not supported"),
    "no projector type": (dict(drop_keys=["clip.vision.projector_type"]), core.GGUFError,
                          "missing required key 'clip.vision.projector_type'"),
    "no embedder": (dict(keys={"clip.has_vision_encoder": (False, B), "clip.has_audio_encoder": (False, B)}),
                    core.GGUFError, "neither clip.has_vision_encoder nor clip.has_audio_encoder"),
    "eps": (dict(keys={"unigemma.vision.rms_norm_eps": (-1.0, F32)}), core.GGUFError,
            "key 'unigemma.vision.rms_norm_eps': epsilon -1"),
    "eps type": (dict(keys={"unigemma.audio.rms_norm_eps": ("tiny", S)}), core.GGUFError,
                 "key 'unigemma.audio.rms_norm_eps': expected FLOAT32, got STRING"),
    "hidden mismatch": (dict(keys={"clip.audio.projection_dim": (48, U32)}), core.GGUFError,
                        "shape [640, 64] disagrees with the keys, expected [640, 48]"),
    "zero dim": (dict(keys={"clip.vision.projection_dim": (0, U32)}), core.GGUFError,
                 "key 'clip.vision.projection_dim': 0 is outside"),
    "missing key": (dict(drop_keys=["clip.vision.embedding_length"]), core.GGUFError,
                    "missing required key 'clip.vision.embedding_length'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_file(case, tmp_path, mmproj_of):
    kw, exc, msg = BAD_FILES[case]
    path = rewrite(mmproj_of("default"), tmp_path / "bad-mmproj.gguf", **kw)
    with pytest.raises(exc) as e:
        core.MMProjector(path)
    assert str(e.value).startswith("[mmproj] ") and msg in str(e.value), str(e.value)


def test_wrong_kind_of_file(tmp_path, mmproj_of):
    text = Path(mmproj_of("default")).with_name("default-f32.gguf")   # the text model of the same conversion
    with pytest.raises(unigemma.ModelError, match=r"^\[mmproj\] .* is a 'gemma4' model, not a multimodal projector"):
        core.MMProjector(text)
    with pytest.raises(unigemma.GGUFError, match=r"^\[mmproj\] .*does-not-exist.gguf"):
        core.MMProjector(tmp_path / "does-not-exist.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(unigemma.GGUFError, match=r"^\[mmproj\] .*bad magic"):
        core.MMProjector(junk)
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(Path(mmproj_of("default")).read_bytes()[:500_000])
    with pytest.raises(unigemma.GGUFError, match=r"^\[mmproj\] "):
        core.MMProjector(trunc)
    with pytest.raises(unigemma.InputError, match="n_threads"):
        core.MMProjector(mmproj_of("default"), n_threads=-1)


def test_single_modality_files(tmp_path, mmproj_of):
    src = mmproj_of("default")
    audio_only = core.MMProjector(rewrite(src, tmp_path / "a.gguf", keys={"clip.has_vision_encoder": (False, B)},
                                          drop_tensors=[t.name for t in core.GGUFFile(src).tensors
                                                        if not t.name.startswith("mm.a.")]))
    assert (audio_only.has_vision, audio_only.has_audio, audio_only.hidden_size) == (False, True, 64)
    assert audio_only.vision_embed_dim == 0 and audio_only.patch_size == 0
    with pytest.raises(unigemma.InputError, match=r"^\[mmproj\] this projector has no vision embedder$"):
        audio_only.embed_image(np.zeros((1, N_IN), np.float32), np.zeros((1, 2), np.int32))
    vision_only = core.MMProjector(rewrite(src, tmp_path / "v.gguf", keys={"clip.has_audio_encoder": (False, B)},
                                           drop_tensors=["mm.a.input_projection.weight"]))
    assert (vision_only.has_vision, vision_only.has_audio, vision_only.audio_frame_size) == (True, False, 0)
    with pytest.raises(unigemma.InputError, match=r"^\[mmproj\] this projector has no audio embedder$"):
        vision_only.embed_audio(np.zeros((1, 640), np.float32))


# ------------------------------------------------------------------------------------------
# Errors: bad inputs (InputError, never a crash)
# ------------------------------------------------------------------------------------------
def _px(n=2):
    return np.random.default_rng(0).random((n, N_IN), dtype=np.float32)


BAD_IMAGE_INPUTS = [
    (lambda: (_px()[0], np.zeros((1, 2), np.int32)), "pixel_values must have shape (n, 6912), got (6912,)"),
    (lambda: (_px()[None], np.zeros((2, 2), np.int32)), "got (1, 2, 6912)"),
    (lambda: (_px()[:, :6900], np.zeros((2, 2), np.int32)), "got (2, 6900)"),
    (lambda: ((_px() * 255).astype(np.uint8), np.zeros((2, 2), np.int32)), "must be floating point (float32), got dtype uint8"),
    (lambda: (np.array([["a"] * N_IN]), np.zeros((1, 2), np.int32)), "must be floating point"),
    (lambda: (_px(), np.zeros((2, 2), np.float32)), "positions must be integers"),
    (lambda: (_px(), np.zeros((2, 3), np.int32)), "positions must have shape (n, 2), got (2, 3)"),
    (lambda: (_px(), np.zeros((3, 2), np.int32)), "3 positions for 2 patches"),
    (lambda: (_px(), np.array([[0, 0], [POSEMB, 0]])), "position (1120, 0) of patch 1 is outside [0, 1120)"),
    (lambda: (_px(), np.array([[0, 0], [0, 2**40]])), "of patch 1 is outside"),
    (lambda: (_px(), np.array([[-2, 0], [0, 0]])), "position (-2, 0) of patch 0"),
    (lambda: (_px(), np.array([[0, 0], [-1, 3]])), "only (-1, -1) marks a padding patch"),
    (lambda: (np.where(np.arange(N_IN) == 7, np.nan, _px()).astype(np.float32), np.zeros((2, 2), np.int32)),
     "patch 0 holds a NaN or infinite value"),
    (lambda: (np.where(np.arange(N_IN) == 7, np.inf, _px()).astype(np.float32), np.array([[-1, -1], [0, 0]])),
     "patch 1 holds a NaN or infinite value"),
]


@pytest.mark.parametrize("i", range(len(BAD_IMAGE_INPUTS)))
def test_bad_image_input(i, mmproj_of):
    make, msg = BAD_IMAGE_INPUTS[i]
    px, pos = make()
    p = core.MMProjector(mmproj_of("default"))
    with pytest.raises(unigemma.InputError) as e:
        p.embed_image(px, pos)
    assert str(e.value).startswith("[mmproj] embed_image: ") and msg in str(e.value), str(e.value)


def test_bad_audio_input(mmproj_of):
    p = core.MMProjector(mmproj_of("default"))
    fr = np.zeros((3, 640), np.float32)
    for frames, msg in [(fr[0], "frames must have shape (n, 640), got (640,)"),
                        (fr[:, :320], "got (3, 320)"),
                        (fr.astype(np.int16), "must be floating point (float32), got dtype int16"),
                        (np.where(np.arange(640) == 3, np.nan, fr).astype(np.float32), "frame 0 holds a NaN"),
                        (np.where(np.arange(3)[:, None] == 2, np.inf, fr).astype(np.float32), "frame 2 holds a NaN")]:
        with pytest.raises(unigemma.InputError) as e:
            p.embed_audio(frames)
        assert str(e.value).startswith("[mmproj] embed_audio: ") and msg in str(e.value), str(e.value)

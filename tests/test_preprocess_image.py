"""Image preprocessing parity with transformers' Gemma4UnifiedImageProcessor (torchvision
backend), without torch:

- every fixture image and array input against the stored oracle (tests/fixtures/
  preprocess_oracle.{json,npz}, made by tools/make_preprocess_oracle.py): decoded pixels,
  resized pixels and float32 patches bit for bit (sha256), positions, token counts;
- token counts for many sizes against the size rule of the conventions reference (§6.1),
  re-derived here;
- the C++ resizer against a slow NumPy transcription of torch's uint8 antialiased bicubic
  algorithm, on random small images (hypothesis);
- every kind of bad input raising MediaError, and decompression bombs refused from the header;
- optionally (UNIGEMMA_TV_PYTHON=/path/to/python with torch + torchvision + transformers) a
  live comparison on fresh random images.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from unigemma import InputError, _core
from unigemma.preprocess import (
    SUPPORTED_BUDGETS,
    MediaError,
    image_token_count,
    load_image,
    preprocess_image,
    resized_size,
)
from unigemma.preprocess.image import resize_to_budget

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MEDIA = FIXTURES / "media"
ORACLE = json.loads((FIXTURES / "preprocess_oracle.json").read_text())
ORACLE_ARRAYS = np.load(FIXTURES / "preprocess_oracle.npz")


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def patch_diff_report(ours: np.ndarray, key: str) -> str:
    ref = ORACLE_ARRAYS[f"{key}/patch_sums"]
    mine = ours.astype(np.float64).sum(axis=-1)
    if mine.shape != ref.shape:
        return f"patch sum shapes differ: {mine.shape} vs {ref.shape}"
    bad = np.nonzero(mine != ref)
    return f"{bad[0].size} patches differ in their sums, max |diff| {np.abs(mine - ref).max():.3g}"


# ---------------------------------------------------------------------------------------------
# Oracle parity


def oracle_input(rec: dict) -> np.ndarray:
    if rec["kind"] == "file":
        return load_image(MEDIA / rec["file"])
    with Image.open(MEDIA / rec["file"]) as im:
        arr = np.array(im)
    if rec["array"] == "gray_hw1":
        arr = arr[..., None]
    return load_image(arr)


@pytest.mark.parametrize("rec", ORACLE["images"], ids=lambda r: r["id"])
def test_image_matches_oracle(rec):
    img = oracle_input(rec)
    assert list(img.shape) == rec["decoded_shape"] and img.dtype == np.uint8
    assert sha256(img) == rec["decoded_sha256"], "decoded pixels differ from transformers' load_image"
    resized = resize_to_budget(img, rec["budget"])
    assert list(resized.shape[:2]) == rec["resized_hw"]
    if f"{rec['id']}/resized" in ORACLE_ARRAYS:
        ref = ORACLE_ARRAYS[f"{rec['id']}/resized"]
        assert np.array_equal(resized, ref), f"resize differs, max |diff| {np.abs(resized.astype(int) - ref).max()}"
    assert sha256(resized) == rec["resized_sha256"], "resized uint8 image differs from torchvision's"
    out = preprocess_image(img, rec["budget"])
    assert out.n_tokens == rec["n_tokens"] == out.pixel_values.shape[0] == out.positions.shape[0]
    assert out.resized_hw == tuple(rec["resized_hw"])
    assert out.pixel_values.dtype == np.float32 and out.pixel_values.shape[1] == 6912
    assert out.positions.dtype == np.int32
    assert np.array_equal(out.positions, ORACLE_ARRAYS[f"{rec['id']}/positions"])
    assert sha256(out.pixel_values) == rec["pixel_values_sha256"], patch_diff_report(out.pixel_values, rec["id"])


def test_oracle_covers_the_fixture_set():
    files = {r["file"] for r in ORACLE["images"]}
    on_disk = {p.name for p in MEDIA.iterdir() if p.suffix not in (".mp4", ".avi", ".mkv")}
    assert files == on_disk and len(files) >= 12
    assert {r["budget"] for r in ORACLE["images"]} == set(SUPPORTED_BUDGETS)
    # Pillow (transformers' load_image) and torchvision decode the same pixels wherever both can;
    # handing the processor load_image's PIL image instead of the path differs only for images
    # with a transparency key (the processor composites it over white)
    for r in ORACLE["images"]:
        if r["kind"] == "file" and r["pil_mode"] != "I;16":
            assert r["pillow_load_image_pixels_identical"], r["id"]
            assert r["pil_load_image_route_identical"] == (r["file"] != "palette_320x200.gif"), r["id"]


def test_pil_and_bytes_sources_match_path():
    path = MEDIA / "exif_rot6_640x480.jpg"
    ref = load_image(path)
    assert ref.shape == (640, 480, 3)  # EXIF orientation 6 applied: stored 640 wide
    assert np.array_equal(load_image(path.read_bytes()), ref)
    assert np.array_equal(load_image(str(path)), ref)
    with Image.open(path) as im:
        assert np.array_equal(load_image(im), ref)


def test_array_inputs():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(load_image(gray), np.repeat(gray[..., None], 3, axis=2))
    assert np.array_equal(load_image(gray[..., None]), load_image(gray))
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    assert np.array_equal(load_image(rgb), rgb)
    assert np.array_equal(load_image(rgb.astype(np.float32) / 255), rgb)  # floats round back exactly
    assert np.array_equal(load_image(rgb[:, ::-1]), rgb[:, ::-1])  # strided views are fine
    # RGBA over white: opaque keeps the colour, transparent becomes white
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [10, 20, 30, 255]
    rgba[0, 1] = [10, 20, 30, 0]
    out = load_image(rgba)
    assert out[0, 0].tolist() == [10, 20, 30] and out[0, 1].tolist() == [255, 255, 255]


def test_identity_size_skips_resize():
    img = np.random.default_rng(1).integers(0, 256, (672, 912, 3), dtype=np.uint8)
    out = preprocess_image(img, 280)
    assert out.resized_hw == (672, 912) and out.n_tokens == 266
    # patch 0 is the top-left 48x48 block, flattened row, column, channel
    assert np.array_equal(out.pixel_values[0], img[:48, :48].reshape(-1) * np.float32(1 / 255))
    # patch 1 is the block to its right; positions are (column, row)
    assert np.array_equal(out.pixel_values[1], img[:48, 48:96].reshape(-1) * np.float32(1 / 255))
    assert out.positions[:2].tolist() == [[0, 0], [1, 0]] and out.positions[19].tolist() == [0, 1]


# ---------------------------------------------------------------------------------------------
# Token counts, re-derived from the conventions reference §6.1


def reference_target(h: int, w: int, budget: int) -> tuple[int, int]:
    """§6.1: f = sqrt(max_soft_tokens * 9 * 256 / (h * w)); each side floor(f * side / 48) * 48;
    a zero side becomes 48 and the other min(floor(long / short) * 48, max_soft_tokens * 48)."""
    f = math.sqrt(budget * 9 * 256 / (h * w))
    th, tw = math.floor(f * h / 48) * 48, math.floor(f * w / 48) * 48
    if th == 0:
        return 48, min(math.floor(w / h) * 48, budget * 48)
    if tw == 0:
        return min(math.floor(h / w) * 48, budget * 48), 48
    return th, tw


def test_token_counts_against_reference_rule():
    rng = np.random.default_rng(2)
    sizes = [(h, w) for h in (1, 2, 3, 47, 48, 49, 100, 480, 768, 1080, 4000) for w in (1, 5, 48, 640, 1920, 9999)]
    sizes += [tuple(int(v) for v in rng.integers(1, 20000, 2)) for _ in range(3000)]
    sizes += [(1, 100000), (100000, 1), (7, 65536)]
    for h, w in sizes:
        for budget in SUPPORTED_BUDGETS:
            th, tw = reference_target(h, w, budget)
            assert resized_size(h, w, budget) == (th, tw), (h, w, budget)
            n = image_token_count(h, w, budget)
            assert n == (th // 48) * (tw // 48) and 1 <= n <= budget, (h, w, budget)


@pytest.mark.parametrize(
    "wh,budget,resized_wh,n",
    [((640, 480), 280, (912, 672), 266), ((1024, 768), 1120, (1824, 1344), 1064),
     ((1920, 1080), 280, (1056, 576), 264), ((1920, 1080), 1120, (2112, 1200), 1100),
     ((224, 224), 280, (768, 768), 256), ((224, 224), 1120, (1584, 1584), 1089),
     ((100, 1000), 280, (240, 2496), 260), ((100, 1000), 1120, (480, 5040), 1050)],
)
def test_token_counts_reference_table(wh, budget, resized_wh, n):
    w, h = wh
    assert resized_size(h, w, budget) == (resized_wh[1], resized_wh[0])
    assert image_token_count(h, w, budget) == n


# ---------------------------------------------------------------------------------------------
# The resizer against a NumPy transcription of torch's algorithm


def torch_cubic(x: float) -> float:
    """Keys cubic, a = -0.5, in ATen's operation order (cubic_convolution1 / 2)."""
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2.0:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def torch_taps(in_size: int, out_size: int):
    """Python-float (double) transcription of torch's `_compute_indices_min_size_weights_aa` +
    `_compute_index_ranges_int16_weights` for bicubic, antialias=True, align_corners=False."""
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    kmax = int(math.ceil(support)) * 2 + 1
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    first, count, real, wmax = [], [], [], 0.0
    for i in range(out_size):
        center = scale * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xsize = min(max(min(int(center + support + 0.5), in_size) - xmin, 0), kmax)
        ws = [torch_cubic((j + xmin - center + 0.5) * invscale) for j in range(xsize)]
        total = 0.0
        for v in ws:
            total += v
        if total != 0.0:
            ws = [v / total for v in ws]
            wmax = max([wmax] + ws)
        first.append(xmin)
        count.append(xsize)
        real.append(ws + [0.0] * (kmax - xsize))
    prec = 0
    while prec < 22 and int(0.5 + wmax * (1 << (prec + 1))) < (1 << 15):
        prec += 1
    w16 = [[int(-0.5 + v * (1 << prec)) if v * (1 << prec) < 0 else int(0.5 + v * (1 << prec)) for v in row]
           for row in real]
    return np.array(first), np.array(count), np.array(w16, dtype=np.int64).reshape(out_size, kmax), prec


def torch_resize_reference(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Width pass, then height pass, uint8 in between; integer accumulation, +half, >>prec, clamp."""

    def one_axis(x: np.ndarray, axis: int, out_size: int) -> np.ndarray:
        first, count, w, prec = torch_taps(x.shape[axis], out_size)
        src = np.moveaxis(x, axis, 0).astype(np.int64)
        out = np.empty((out_size,) + src.shape[1:], np.int64)
        for i in range(out_size):
            acc = np.full(src.shape[1:], 1 << (prec - 1), np.int64)
            for k in range(count[i]):
                acc += src[first[i] + k] * w[i, k]
            out[i] = np.clip(acc >> prec, 0, 255)
        return np.moveaxis(out, 0, axis).astype(np.uint8)

    x = img
    if ow != x.shape[1]:
        x = one_axis(x, 1, ow)
    if oh != x.shape[0]:
        x = one_axis(x, 0, oh)
    return x


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 40), w=st.integers(1, 40), oh=st.integers(1, 90), ow=st.integers(1, 90),
    channels=st.sampled_from([1, 3, 4]), seed=st.integers(0, 2**32 - 1), smooth=st.booleans(),
)
def test_resizer_matches_numpy_transcription(h, w, oh, ow, channels, seed, smooth):
    rng = np.random.default_rng(seed)
    if smooth:
        img = np.clip(np.cumsum(rng.integers(-9, 10, (h, w, channels)), axis=1) + 128, 0, 255).astype(np.uint8)
    else:
        img = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    ours = _core.resize_bicubic_aa(img, oh, ow)
    assert ours.shape == (oh, ow, channels)
    assert np.array_equal(ours, torch_resize_reference(img, oh, ow))


@pytest.mark.parametrize("n_in,n_out", [(1, 48), (7, 19), (300, 48), (4000, 2928), (1024, 912), (17, 193), (5, 5)])
def test_resizer_taps_match_transcription(n_in, n_out):
    first, count, w, prec = _core.resize_bicubic_aa_taps(n_in, n_out)
    rf, rc, rw, rp = torch_taps(n_in, n_out)
    assert prec == rp and np.array_equal(first, rf) and np.array_equal(count, rc)
    assert np.array_equal(w.astype(np.int64), rw)


def test_resizer_properties():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (123, 457, 3), dtype=np.uint8)
    assert np.array_equal(_core.resize_bicubic_aa(img, 123, 457), img)
    by_threads = [_core.resize_bicubic_aa(img, 480, 96, n_threads=n) for n in (1, 2, 3)]
    assert all(np.array_equal(by_threads[0], r) for r in by_threads)
    assert np.array_equal(_core.resize_bicubic_aa(np.asfortranarray(img), 50, 60), _core.resize_bicubic_aa(img, 50, 60))
    gray = img[..., 0].copy()
    assert _core.resize_bicubic_aa(gray, 10, 20).shape == (10, 20)
    flat = np.full((30, 40, 3), 77, np.uint8)  # weights sum to 1: a flat image stays flat
    assert (_core.resize_bicubic_aa(flat, 97, 13) == 77).all()
    for bad in (img.astype(np.float32), img[..., None], np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(InputError, match=r"\[resize_bicubic_aa\]"):
            _core.resize_bicubic_aa(bad, 10, 10)
    huge = np.broadcast_to(img[:1, :1], (1 << 30, 1 << 30, 3))  # zero strides: no memory behind it
    with pytest.raises(InputError, match=r"\[resize_bicubic_aa\] image of shape"):
        _core.resize_bicubic_aa(huge, 10, 10)
    for oh, ow in ((0, 5), (5, -1), (1 << 21, 5)):
        with pytest.raises(InputError, match=r"\[resize_bicubic_aa\]"):
            _core.resize_bicubic_aa(img, oh, ow)


# ---------------------------------------------------------------------------------------------
# Bad inputs


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height RGB, followed by a tiny IDAT: decoding it would
    need width * height * 3 bytes; its header costs nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def gif_header_only(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b",\0\0\0\0\1\0\1\0\0\2\2D\1\0;"


def test_bad_sources(tmp_path):
    good = (MEDIA / "photo_1024x768.jpg").read_bytes()
    png = (MEDIA / "rgba_400x300.png").read_bytes()
    cases = {
        "missing file": tmp_path / "nope.png",
        "directory": tmp_path,
        "empty bytes": b"",
        "text bytes": b"this is not an image at all",
        "random bytes": np.random.default_rng(4).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "truncated jpeg": good[: len(good) // 2],
        "truncated png": png[: len(png) // 3],
        "jpeg header only": good[:600],
        "int": 42,
        "list": [1, 2, 3],
        "none": None,
    }
    text = tmp_path / "notes.png"
    text.write_text("hello")
    cases["text file named .png"] = text
    for what, src in cases.items():
        with pytest.raises(MediaError) as ei:
            load_image(src)
        assert isinstance(ei.value, InputError), what
        assert "load_image" in str(ei.value), what


@pytest.mark.parametrize(
    "arr",
    [np.zeros((4, 4, 3), np.int16), np.zeros((4, 4, 3), bool), np.zeros((4, 4, 3), np.complex64),
     np.zeros((4, 4, 3), np.uint16), np.zeros((2, 4, 4, 3), np.uint8), np.zeros((4, 4, 2), np.uint8),
     np.zeros((4,), np.uint8), np.zeros((0, 5, 3), np.uint8), np.zeros((5, 0), np.uint8),
     np.full((4, 4, 3), np.nan, np.float32), np.full((4, 4, 3), np.inf), np.full((4, 4, 3), 1.5),
     np.full((4, 4, 3), -0.1, np.float32)],
    ids=lambda a: f"{a.dtype}{a.shape}",
)
def test_bad_arrays(arr):
    with pytest.raises(MediaError, match="load_image"):
        load_image(arr)


def test_bad_preprocess_arguments():
    img = np.zeros((50, 60, 3), np.uint8)
    for bad_img in (img.astype(np.float32), img[..., :2], img[0], np.zeros((0, 3, 3), np.uint8), [[1, 2, 3]]):
        with pytest.raises(MediaError, match="preprocess_image"):
            preprocess_image(bad_img)
    for budget in (0, 100, 281, 2240, -70, 280.0, "280", True, None):
        with pytest.raises(MediaError, match="max_soft_tokens"):
            preprocess_image(img, budget)
        with pytest.raises(MediaError, match="max_soft_tokens"):
            image_token_count(480, 640, budget)
    for h, w in ((0, 10), (10, -1), (1.5, 10), (None, 3), (True, 5)):
        with pytest.raises(MediaError):
            image_token_count(h, w)


def test_pixel_limit_is_configurable():
    path = MEDIA / "photo_1024x768.jpg"
    with pytest.raises(MediaError, match="exceeds the limit of 786431"):
        load_image(path, max_pixels=1024 * 768 - 1)
    assert load_image(path, max_pixels=1024 * 768).shape == (768, 1024, 3)
    with pytest.raises(MediaError, match="exceeds the limit"):
        load_image(np.zeros((100, 100, 3), np.uint8), max_pixels=9999)
    with pytest.raises(MediaError, match="max_pixels"):
        load_image(path, max_pixels=0)


def test_decompression_bombs_refused_from_header_without_memory(tmp_path):
    """Headers declaring 120 MP (over our 100 MP default, under Pillow's own refusal) and
    2.5 GP (Pillow refuses first) must fail before decoding: the peak RSS of the subprocess
    that opens them must grow far less than the 360 MB a 120 MP RGB decode would take.
    (The peak is reset with /proc/self/clear_refs: a child's ru_maxrss starts at the parent's.)"""
    (tmp_path / "bomb120.png").write_bytes(png_header_only(12000, 10000))
    (tmp_path / "bomb2g.png").write_bytes(png_header_only(50000, 50000))
    (tmp_path / "bomb.gif").write_bytes(gif_header_only(65535, 65535))
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from unigemma.preprocess import MediaError, load_image

        def status_kib(field):
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
            base = status_kib("VmRSS")
        except OSError:
            base = None
        msgs = []
        for name in ("bomb120.png", "bomb2g.png", "bomb.gif"):
            for src in (Path({str(tmp_path)!r}) / name, (Path({str(tmp_path)!r}) / name).read_bytes()):
                try:
                    load_image(src)
                except MediaError as e:
                    msgs.append(str(e))
                else:
                    sys.exit("no error for " + name)
        try:  # a raised limit still cannot make Pillow decode a 2.5 GP header
            load_image(Path({str(tmp_path)!r}) / "bomb2g.png", max_pixels=3_000_000_000)
        except MediaError as e:
            msgs.append(str(e))
        print(-1 if base is None else status_kib("VmHWM") - base)
        print("\\n".join(msgs))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr + res.stdout
    lines = res.stdout.strip().splitlines()
    growth_kib = int(lines[0])
    if growth_kib >= 0:  # Linux; elsewhere the messages below still prove the header check fired
        assert growth_kib < 64 * 1024, f"peak RSS grew by {growth_kib} KiB: something was decoded"
    assert len(lines) == 8
    assert "12000x10000 = 120000000 pixels exceeds the limit of 100000000" in lines[1]
    assert all("load_image" in m for m in lines[1:])
    assert any("decompression-bomb" in m for m in lines[1:])


# ---------------------------------------------------------------------------------------------
# Optional live oracle: fresh random inputs through real torchvision + transformers


LIVE_SCRIPT = r"""
import sys, numpy as np, torch, warnings
warnings.filterwarnings("ignore")
from torchvision.transforms.v2 import functional as tvF
from transformers.models.gemma4_unified.image_processing_gemma4_unified import Gemma4UnifiedImageProcessor
d = dict(np.load(sys.argv[1]))
out = {}
for k in [k for k in d if k.startswith("rs")]:
    img = d[k]; oh, ow = (int(v) for v in d["size_" + k])
    t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    out[k] = tvF.resize(t, [oh, ow], interpolation=tvF.InterpolationMode.BICUBIC, antialias=True).permute(1, 2, 0).numpy()
ip = Gemma4UnifiedImageProcessor()
for k in [k for k in d if k.startswith("pp")]:
    budget = int(d["budget_" + k])
    # a CHW tensor: a NumPy HWC array of height <= 4 would be taken for channels-first
    chw = torch.from_numpy(d[k]).permute(2, 0, 1).contiguous()
    r = ip(images=[chw], max_soft_tokens=budget, return_tensors="pt")
    n = int(r["num_soft_tokens_per_image"][0])
    out["pv_" + k] = r["pixel_values"][0, :n].numpy()
    out["pos_" + k] = r["image_position_ids"][0, :n].numpy()
np.savez(sys.argv[2], **out)
"""


@pytest.mark.skipif(not os.environ.get("UNIGEMMA_TV_PYTHON"), reason="torchvision oracle: set UNIGEMMA_TV_PYTHON to a Python interpreter with torchvision installed")
def test_live_oracle_random_images(tmp_path):
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    inputs = {}
    for i in range(40):  # raw resizes, up and down, odd and extreme sizes
        h, w = (int(v) for v in rng.integers(1, 400, 2))
        oh, ow = (int(v) for v in rng.integers(2, 500, 2))
        inputs[f"rs{i}"] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        inputs[f"size_rs{i}"] = np.array([oh, ow])
    for i in range(8):  # the whole processor
        h, w = (int(v) for v in rng.integers(1, 1500, 2))
        if i == 0:
            h, w = 3, 1400
        inputs[f"pp{i}"] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        inputs[f"budget_pp{i}"] = np.array(SUPPORTED_BUDGETS[i % 5])
    np.savez(tmp_path / "in.npz", **inputs)
    (tmp_path / "live.py").write_text(LIVE_SCRIPT)
    res = subprocess.run([os.environ["UNIGEMMA_TV_PYTHON"], str(tmp_path / "live.py"), str(tmp_path / "in.npz"),
                          str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ref = np.load(tmp_path / "out.npz")
    for k in (k for k in inputs if k.startswith("rs")):
        oh, ow = (int(v) for v in inputs["size_" + k])
        assert np.array_equal(_core.resize_bicubic_aa(inputs[k], oh, ow), ref[k]), (k, inputs[k].shape, oh, ow)
    for k in (k for k in inputs if k.startswith("pp")):
        out = preprocess_image(inputs[k], int(inputs["budget_" + k]))
        assert np.array_equal(out.pixel_values, ref["pv_" + k]), (k, inputs[k].shape)
        assert np.array_equal(out.positions, ref["pos_" + k]), k

#!/usr/bin/env python3
"""Write the small image and video files under tests/fixtures/media/.

    python tools/make_media_fixtures.py [OUTDIR]      (default: tests/fixtures/media)

Deterministic: the pixels come from a seeded NumPy generator and closed-form gradients, so a
rerun with the same Pillow / PyAV (FFmpeg) versions writes identical bytes. The committed files
are the test inputs; the oracle in tests/fixtures/preprocess_oracle.npz was computed from them
(tools/make_preprocess_oracle.py), so regenerate both together or neither.

Content is smooth (gradients, discs, bars, mild noise) so that the files stay small; each file
exercises one decoding path: sizes that resize up / down / not at all, extreme aspect ratios,
every Pillow mode the loader converts (RGBA, LA, L, P with a transparency index, CMYK, I;16, 1),
EXIF orientation, and the container formats (JPEG, PNG, WebP, GIF, BMP, TIFF; MP4/H.264 and
AVI and MKV with MPEG-4 Part 2 video).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

SEED = 20260101


def scene(h: int, w: int, seed: int, noise: float = 3.0) -> np.ndarray:
    """A photo-like uint8 (h, w, 3) image: diagonal colour gradients, a few soft discs and
    bars, plus mild Gaussian noise (so the resampler sees texture, not only flat ramps)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, h, dtype=np.float64)[:, None]
    x = np.linspace(0.0, 1.0, w, dtype=np.float64)[None, :]
    img = np.empty((h, w, 3), dtype=np.float64)
    img[..., 0] = 40 + 180 * x + 20 * np.sin(6.0 * y)
    img[..., 1] = 60 + 150 * y * (1 - 0.5 * x)
    img[..., 2] = 200 - 120 * (x + y) / 2
    for _ in range(4):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.08, 0.3) * min(h, w) + 1
        colour = rng.uniform(0, 255, 3)
        d = np.sqrt((np.arange(h)[:, None] - cy) ** 2 + (np.arange(w)[None, :] - cx) ** 2)
        a = np.clip((r - d) / 2.0, 0.0, 1.0)[..., None]  # antialiased disc edge
        img = img * (1 - a) + colour * a
    bar = (np.arange(w) // max(1, w // 16)) % 2 == 0
    img[h // 3 : h // 3 + max(1, h // 20), bar] = [250, 250, 240]
    img += rng.normal(0.0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation tag
    return exif.tobytes()


def write_images(out: Path) -> None:
    s = SEED
    Image.fromarray(np.array([[[200, 30, 90]]], dtype=np.uint8)).save(out / "tiny_1x1.png")
    Image.fromarray(scene(30, 20, s + 1)).save(out / "tiny_20x30.png")
    Image.fromarray(scene(300, 4000, s + 2, noise=1.5)).save(out / "wide_4000x300.jpg", quality=70)
    Image.fromarray(scene(4000, 300, s + 3, noise=1.5)).save(out / "tall_300x4000.webp", quality=70)
    Image.fromarray(scene(768, 1024, s + 4)).save(out / "photo_1024x768.jpg", quality=85)
    # 912x672 is exactly the 280-token target of a 912x672 image: the no-resize path.
    Image.fromarray(scene(672, 912, s + 5, noise=1.0)).save(out / "exact_912x672.jpg", quality=75)

    # RGBA with a smooth alpha ramp and fully transparent pixels that still carry colour, so
    # "drop alpha" and "composite on white" give different pixels.
    rgb = scene(300, 400, s + 6)
    alpha = np.tile(np.linspace(0, 255, 400).astype(np.uint8), (300, 1))
    alpha[:60, :] = 0
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(out / "rgba_400x300.png")

    gray = scene(480, 640, s + 7)[..., 1]
    Image.fromarray(gray, "L").save(out / "gray_640x480.png")
    la = np.dstack([gray[:240, :320], np.full((240, 320), 128, np.uint8)])
    Image.fromarray(la, "LA").save(out / "gray_alpha_320x240.png")

    # Palette GIF with index 0 declared transparent.
    pal = Image.fromarray(scene(200, 320, s + 8, noise=0.0)).quantize(colors=32, dither=Image.Dither.NONE)
    pal.save(out / "palette_320x200.gif", transparency=0)
    # Palette PNG without transparency (plain P -> RGB through the palette).
    Image.fromarray(scene(150, 250, s + 9, noise=0.0)).quantize(colors=16).save(out / "palette_250x150.png")

    Image.fromarray(scene(400, 500, s + 10)).convert("CMYK").save(out / "cmyk_500x400.jpg", quality=85)

    # 16-bit grayscale PNG (Pillow mode I;16): a full-range ramp in both axes.
    yy, xx = np.mgrid[0:200, 0:300]
    g16 = ((xx / 299.0) * 40000 + (yy / 199.0) * 25000).astype(np.uint16)
    Image.fromarray(g16).save(out / "gray16_300x200.png")

    # EXIF orientation 6 ("rotate 90 CW to display"): stored 640 wide, displayed 480 wide.
    Image.fromarray(scene(480, 640, s + 11)).save(
        out / "exif_rot6_640x480.jpg", quality=85, exif=exif_with_orientation(6)
    )
    Image.fromarray(scene(375, 500, s + 12)).save(out / "photo_500x375.webp", quality=80)
    Image.fromarray(scene(150, 200, s + 13)).save(out / "bitmap_200x150.bmp")
    Image.fromarray(scene(240, 320, s + 14)).save(out / "scan_320x240.tiff", compression="tiff_deflate")
    bw = (scene(90, 120, s + 15)[..., 0] > 128)
    Image.fromarray(bw).convert("1").save(out / "bilevel_120x90.png")


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range RGB -> planar YUV 4:2:0 (2x2 chroma means), as the (h*3/2, w) array
    PyAV takes for format="yuv420p". Done here rather than by swscale inside the encoder, whose
    SIMD paths depend on buffer alignment and made the encoded bytes vary from run to run."""
    f = rgb.astype(np.float64)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape

    def sub(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [y, sub(cb).reshape(h // 4, w), sub(cr).reshape(h // 4, w)]
    return np.clip(np.rint(np.concatenate(planes, axis=0)), 0, 255).astype(np.uint8)


def write_video(path: Path, codec: str, fps: int, n_frames: int, w: int, h: int, seed: int) -> None:
    import av
    from fractions import Fraction

    base = scene(h, w, seed, noise=0.0)
    path.unlink(missing_ok=True)  # the muxer does not truncate an existing file
    # fflags=+bitexact keeps creation times and random UIDs out of the container headers
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        if codec == "libx264":
            # one thread and no macroblock-tree ratecontrol: with mbtree on, this x264 build wrote
            # different bytes from run to run (memory-layout dependent); without it the output is
            # byte-reproducible
            stream.thread_count = 1
            stream.options = {"crf": "30", "preset": "veryfast",
                              "x264-params": "threads=1:lookahead-threads=1:mbtree=0"}
        else:
            stream.bit_rate = 200_000
            stream.thread_count = 1
        for i in range(n_frames):
            # the scene slides right by 2 px per frame and a bar sweeps down: every frame differs,
            # so a wrong frame index shows in the pixels
            frame = np.roll(base, 2 * i, axis=1).copy()
            row = (i * 3) % h
            frame[row : row + 4, :, :] = [255, 255, 0]
            vf = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
            vf.pts = i
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "media"
    out.mkdir(parents=True, exist_ok=True)
    write_images(out)
    # 24 fps, 3 s (72 frames), H.264 in MP4; 10 fps, 4.5 s (45 frames), MPEG-4 Part 2 in AVI.
    write_video(out / "clip_24fps_3s.mp4", "libx264", 24, 72, 160, 120, SEED + 20)
    write_video(out / "clip_10fps_4s5.avi", "mpeg4", 10, 45, 200, 112, SEED + 21)
    # Matroska stores no frame count (PyAV reports 0 frames): the loader must count packets.
    write_video(out / "nocount_12fps.mkv", "mpeg4", 12, 40, 64, 48, SEED + 22)
    # Fewer frames (20) than the default 32 to sample.
    write_video(out / "short_8fps_20f.mp4", "libx264", 8, 20, 64, 48, SEED + 23)
    total = sum(p.stat().st_size for p in out.iterdir())
    for p in sorted(out.iterdir()):
        print(f"{p.stat().st_size:>9}  {p.name}")
    print(f"{total:>9}  total bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

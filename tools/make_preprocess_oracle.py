#!/usr/bin/env python3
"""Compute the transformers reference outputs for the media fixtures and store them compactly.

    /work/ext/tv/bin/python tools/make_preprocess_oracle.py [--out tests/fixtures]

Needs torch 2.14.1, torchvision 0.29.1, transformers 5.23.0, pillow, av (the "oracle" venv);
does not import unigemma. Writes
    tests/fixtures/preprocess_oracle.json   per case: shapes, token counts, sha256 digests
    tests/fixtures/preprocess_oracle.npz    per case: positions, per-patch float64 sums,
                                            and the resized uint8 image where it is small
so that CI (no torch) can check unigemma's preprocessing bit for bit.

Reference paths, as transformers runs them:
- images: `Gemma4UnifiedImageProcessor()(images=[path], max_soft_tokens=B)`, the route of
  `apply_chat_template` with an image path: the processor decodes the file itself with
  torchvision's decode_image (RGB, EXIF orientation applied). For files torchvision cannot
  decode (BMP, TIFF) the processor gets the pixels of `transformers.image_utils.load_image`
  (Pillow: EXIF transpose, convert("RGB")), which equal torchvision's wherever both decode
  (recorded per file). Exception, 16-bit grayscale: load_image clips it to 255 and torchvision
  returns uint16; unigemma maps it to round(v / 257) (a documented deviation) and the
  processor is fed that array. Each record also says whether the third route,
  processor(images=load_image(path)), gives the same patches (it does not for images with a
  transparency key, which the processor then composites over white).
- array inputs (RGBA, (H, W, 1) gray): the NumPy array itself goes to the image processor.
- videos: `transformers.video_utils.load_video(path, backend="pyav")` with the processor's
  `sample_frames` (num_frames 32), then `Gemma4UnifiedVideoProcessor()(videos=[frames],
  video_metadata=[metadata], do_sample_frames=False)`; timestamps through the processor's own
  `replace_video_token`. Two documented unigemma extensions, recorded as such: a stream with
  fewer frames than requested samples all of them (num_frames = total), and a container with
  no frame count gets its frames counted by decoding.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / "tests" / "fixtures" / "media"
SMALL_RESIZED_BYTES = 64 * 1024  # store the resized uint8 image when it is at most this big
SMALL_FRAMES_BYTES = 320 * 1024  # store a video's decoded frames when they are at most this big

IMAGE_CASES = [
    # (file, budgets)
    ("tiny_1x1.png", (280, 70)),
    ("tiny_20x30.png", (280,)),
    ("wide_4000x300.jpg", (280, 1120)),
    ("tall_300x4000.webp", (280, 70)),
    ("photo_1024x768.jpg", (280, 70, 140, 560, 1120)),
    ("exact_912x672.jpg", (280, 70)),
    ("rgba_400x300.png", (280,)),
    ("gray_640x480.png", (280,)),
    ("gray_alpha_320x240.png", (280,)),
    ("palette_320x200.gif", (280,)),
    ("palette_250x150.png", (280,)),
    ("cmyk_500x400.jpg", (280,)),
    ("gray16_300x200.png", (280,)),
    ("exif_rot6_640x480.jpg", (280, 1120)),
    ("photo_500x375.webp", (280,)),
    ("bitmap_200x150.bmp", (280,)),
    ("scan_320x240.tiff", (280, 140)),
    ("bilevel_120x90.png", (280,)),
]
ARRAY_CASES = [
    # (id, file the array is read from, how), fed to the processor as a NumPy array
    ("array_rgba_400x300", "rgba_400x300.png", "rgba"),
    ("array_gray_hw1_640x480", "gray_640x480.png", "gray_hw1"),
]
VIDEO_CASES = [
    # (file, num_frames, budget)
    ("clip_24fps_3s.mp4", 32, 70),
    ("clip_24fps_3s.mp4", 32, 280),
    ("clip_10fps_4s5.avi", 32, 70),
    ("nocount_12fps.mkv", 32, 70),
    ("short_8fps_20f.mp4", 32, 70),
]


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def versions() -> dict:
    import av
    import PIL
    import torch
    import torchvision
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "pillow": PIL.__version__,
        "av": av.__version__,
        "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "numpy": np.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
    }


def record_patches(rec: dict, arrays: dict, key: str, pixel_values: np.ndarray, positions: np.ndarray) -> None:
    """pixel_values (n, 6912) float32 without padding, positions (n, 2)."""
    rec["n_tokens"] = int(pixel_values.shape[0])
    rec["pixel_values_sha256"] = sha256(pixel_values.astype(np.float32))
    arrays[f"{key}/positions"] = positions.astype(np.int32)
    arrays[f"{key}/patch_sums"] = pixel_values.astype(np.float64).sum(axis=1)


def image_case(ip, key: str, image, chw, budget: int, rec: dict, arrays: dict) -> None:
    """`image`: what the processor is called with (a path, a tensor or an array); `chw`: the
    uint8 (3, H, W) tensor process_image makes of it (for the resized-image record)."""
    import torch
    from torchvision.transforms.v2 import functional as tvF

    out = ip(images=[image], max_soft_tokens=budget, return_tensors="pt")
    n = int(out["num_soft_tokens_per_image"][0])
    pv = out["pixel_values"][0, :n].numpy()
    pos = out["image_position_ids"][0, :n].numpy()
    assert (out["image_position_ids"][0, n:] == -1).all() and (out["pixel_values"][0, n:] == 0).all()
    record_patches(rec, arrays, key, pv, pos)
    # The resized uint8 image, through the processor's own resize method.
    resized = ip.aspect_ratio_preserving_resize(
        chw, patch_size=ip.patch_size, max_patches=budget * ip.pooling_kernel_size**2,
        pooling_kernel_size=ip.pooling_kernel_size, resample=tvF.InterpolationMode.BICUBIC,
    )
    assert resized.dtype == torch.uint8
    r = resized.permute(1, 2, 0).numpy()
    rec["resized_hw"] = [int(r.shape[0]), int(r.shape[1])]
    rec["resized_sha256"] = sha256(r)
    assert rec["n_tokens"] == (r.shape[0] // 48) * (r.shape[1] // 48)
    if r.nbytes <= SMALL_RESIZED_BYTES:
        arrays[f"{key}/resized"] = r


def images(ip, recs: list, arrays: dict) -> None:
    import torch
    from PIL import Image
    from transformers.image_utils import load_image, load_image_as_tensor

    for fname, budgets in IMAGE_CASES:
        path = str(MEDIA / fname)
        with Image.open(path) as im:
            mode = im.mode
        pil_pixels = np.array(load_image(path))
        try:
            tv = load_image_as_tensor(path)
            tv_error = None
        except Exception as e:  # torchvision has no BMP / TIFF decoder
            tv, tv_error = None, f"{type(e).__name__}"
        if mode.startswith("I;16"):
            raw = np.asarray(Image.open(path), dtype=np.int64)
            decoded = np.repeat((((raw + 128) // 257).astype(np.uint8))[..., None], 3, axis=2)
            chw = torch.from_numpy(decoded).permute(2, 0, 1).contiguous()
            fed, route = chw, ("unigemma deviation: 16-bit gray mapped to round(v/257) (transformers' "
                               "load_image clips to 255, its torchvision decoder returns uint16)")
        elif tv is not None:
            # the route of processor(images=path) / apply_chat_template: torchvision decode_image
            # (RGB, EXIF orientation applied) inside fetch_images
            chw, fed, route = tv, path, "processor(images=path): torchvision decode_image"
            decoded = tv.permute(1, 2, 0).numpy()
        else:
            # torchvision cannot decode it: transformers.image_utils.load_image (Pillow)
            decoded = pil_pixels
            chw = torch.from_numpy(decoded).permute(2, 0, 1).contiguous()
            fed, route = chw, f"transformers.image_utils.load_image (torchvision: {tv_error})"
        for budget in budgets:
            key = f"{fname}@{budget}"
            rec = {
                "id": key, "kind": "file", "file": fname, "pil_mode": mode, "budget": budget,
                "decode": route, "decoded_shape": list(decoded.shape), "decoded_sha256": sha256(decoded),
                "pillow_load_image_pixels_identical": bool(np.array_equal(pil_pixels, decoded)),
            }
            image_case(ip, key, fed, chw, budget, rec, arrays)
            # the other transformers route, processor(images=load_image(path)): the processor then
            # composites images that carry a transparency key (GIF / tRNS) over white
            alt = ip(images=[load_image(path)], max_soft_tokens=budget, return_tensors="pt")
            rec["pil_load_image_route_identical"] = bool(
                sha256(alt["pixel_values"][0, : rec["n_tokens"]].numpy()) == rec["pixel_values_sha256"])
            recs.append(rec)
            print(f"  {key:32s} {rec['resized_hw']} n={rec['n_tokens']} "
                  f"pil-route-same={rec['pil_load_image_route_identical']}", flush=True)
    for key0, fname, how in ARRAY_CASES:
        with Image.open(MEDIA / fname) as im:
            arr = np.array(im)
        if how == "rgba":
            assert arr.shape[2] == 4
        else:  # transformers refuses 2-D arrays; (H, W, 1) is its grayscale array layout
            assert arr.ndim == 2
            arr = arr[..., None]
        key = f"{key0}@280"
        rec = {"id": key, "kind": "array", "file": fname, "array": how, "budget": 280,
               "array_shape": list(arr.shape)}
        # what the processor makes of the array before resizing (gray -> RGB, RGBA -> over white)
        chw = ip.process_image(arr, do_convert_rgb=True)
        t = chw.permute(1, 2, 0).numpy()
        rec["decoded_shape"], rec["decoded_sha256"] = list(t.shape), sha256(t)
        image_case(ip, key, arr, chw, 280, rec, arrays)
        recs.append(rec)
        print(f"  {key:32s} {rec['resized_hw']} n={rec['n_tokens']}", flush=True)


def videos(vp, recs: list, arrays: dict) -> None:
    import av
    from transformers.models.gemma4_unified.processing_gemma4_unified import Gemma4UnifiedProcessor
    from transformers.video_utils import VideoMetadata, default_sample_indices_fn, load_video

    for fname, num_frames, budget in VIDEO_CASES:
        path = str(MEDIA / fname)
        with av.open(path) as c:
            declared = int(c.streams.video[0].frames)
            fps = float(c.streams.video[0].average_rate)
        if declared == 0:
            # extension: count by decoding, then transformers' own sampling and frame picking
            with av.open(path) as c:
                allf = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            meta = VideoMetadata(total_num_frames=len(allf), fps=fps, duration=len(allf) / fps,
                                 video_backend="pyav", height=allf[0].shape[0], width=allf[0].shape[1])
            meta.frames_indices = default_sample_indices_fn(meta, num_frames=num_frames)
            frames = np.stack([allf[i] for i in meta.frames_indices])
            path_note = "unigemma extension: no frame count in the container; frames counted by decoding"
        else:
            n = min(num_frames, declared)
            frames, meta = load_video(path, backend="pyav",
                                      sample_indices_fn=lambda metadata, **kw: vp.sample_frames(metadata, num_frames=n))
            path_note = "transformers.video_utils.load_video(backend='pyav')"
            if n < num_frames:
                path_note += f"; unigemma extension: {declared} < {num_frames} frames, num_frames = {declared}"
        out = vp(videos=[frames], video_metadata=[meta], do_sample_frames=False,
                 max_soft_tokens=budget, return_tensors="pt")
        n_tok = int(out["num_soft_tokens_per_video"][0])
        pv = out["pixel_values_videos"][:, :n_tok].numpy()
        pos = out["video_position_ids"][:, :n_tok].numpy()
        assert (out["video_position_ids"][:, n_tok:] == -1).all()
        assert all((pos[i] == pos[0]).all() for i in range(len(pos)))
        fake = SimpleNamespace(boi_token="<B>", eoi_token="<E>", video_token="<V>")
        text = Gemma4UnifiedProcessor.replace_video_token(
            fake, {"num_soft_tokens_per_video": [1], "video_metadata": [meta]}, 0)
        stamps = [part.strip().split(" ")[0] for part in text.split("<E>") if part.strip()]
        key = f"{fname}@{num_frames}@{budget}"
        rec = {
            "id": key, "file": fname, "num_frames": num_frames, "budget": budget, "path": path_note,
            "total_frames": int(meta.total_num_frames), "fps": float(meta.fps), "duration": float(meta.duration),
            "indices": [int(i) for i in meta.frames_indices], "timestamps": [float(t) for t in meta.timestamps],
            "prompt_timestamps": stamps, "frames_shape": list(frames.shape), "frames_sha256": sha256(frames),
        }
        from torchvision.transforms.v2 import functional as tvF
        import torch
        t = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
        resized = vp.aspect_ratio_preserving_resize(
            t, patch_size=vp.patch_size, max_patches=budget * vp.pooling_kernel_size**2,
            pooling_kernel_size=vp.pooling_kernel_size, resample=tvF.InterpolationMode.BICUBIC)
        rec["resized_hw"] = [int(resized.shape[2]), int(resized.shape[3])]
        rec["resized_sha256"] = sha256(resized.permute(0, 2, 3, 1).numpy())
        rec["n_tokens_per_frame"] = n_tok
        rec["pixel_values_sha256"] = sha256(pv.astype(np.float32))
        arrays[f"{key}/positions"] = pos[0].astype(np.int32)
        arrays[f"{key}/patch_sums"] = pv.astype(np.float64).sum(axis=2)
        if frames.nbytes <= SMALL_FRAMES_BYTES:
            # the decoded frames themselves, so preprocess_video is checked even where another
            # FFmpeg build decodes (or converts to RGB) differently
            arrays[f"{key}/frames"] = frames
        recs.append(rec)
        print(f"  {key:32s} frames {frames.shape} -> {rec['resized_hw']} n={n_tok}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures"))
    args = ap.parse_args()
    from transformers.models.gemma4_unified.image_processing_gemma4_unified import Gemma4UnifiedImageProcessor
    from transformers.models.gemma4_unified.video_processing_gemma4_unified import Gemma4UnifiedVideoProcessor

    ip, vp = Gemma4UnifiedImageProcessor(), Gemma4UnifiedVideoProcessor()
    image_recs, video_recs, arrays = [], [], {}
    print("images:")
    images(ip, image_recs, arrays)
    print("videos:")
    videos(vp, video_recs, arrays)
    out = Path(args.out)
    doc = {
        "provenance": {
            "command": "python tools/make_preprocess_oracle.py (oracle venv)",
            "versions": versions(),
            "image_processor": "Gemma4UnifiedImageProcessor() defaults (patch 16, pooling 3, bicubic, "
                               "rescale 1/255, no normalize)",
            "video_processor": "Gemma4UnifiedVideoProcessor() defaults (num_frames 32, budget 70, "
                               "rescale fused into normalize mean 0 std 1)",
        },
        "images": image_recs,
        "videos": video_recs,
    }
    (out / "preprocess_oracle.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez_compressed(out / "preprocess_oracle.npz", **arrays)
    print(f"wrote {out / 'preprocess_oracle.json'} and {out / 'preprocess_oracle.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

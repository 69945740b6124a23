"""`unigemma bench media MMPROJ --image F --audio F`: time from a media file to soft-token rows.

Per repetition (median over `-r`, after one untimed warm-up) and per stage:
  image: decode (Pillow) -> resize + patchify (C++ antialiased bicubic, bit-exact with
         transformers) -> vision embedder (C++): n soft tokens x hidden
  audio: decode + mono + resample to 16 kHz (soundfile + soxr) -> frames -> audio embedder
llama.cpp's `llama-mtmd-cli -v` logs the comparable numbers (bitmap preprocessing and
"mtmd batch encoding done in X ms"); BENCHMARKS.md puts both side by side.
"""
from __future__ import annotations

import json
import statistics
import sys
import time


def add_parser(bsub) -> None:
    m = bsub.add_parser("media", help="image / audio preprocessing + embedding time with a projector")
    m.add_argument("mmproj", help="projector GGUF (gemma4uv / gemma4ua)")
    m.add_argument("--image", help="image file")
    m.add_argument("--audio", help="audio file")
    m.add_argument("--image-tokens", type=int, default=280, help="image budget (default 280)")
    m.add_argument("-t", "--threads", type=int, default=0, help="threads (0 = all)")
    m.add_argument("-r", "--reps", type=int, default=5, help="repetitions (default 5)")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(fn=run_cli)


def _median_ms(fn, reps: int) -> tuple[float, object]:
    out = fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), out


def run(mmproj: str, image: str | None = None, audio: str | None = None, image_tokens: int = 280,
        threads: int = 0, reps: int = 5) -> dict:
    from . import _core as core
    from .preprocess.audio import audio_frames, load_audio
    from .preprocess.image import load_image, preprocess_image

    proj = core.MMProjector(mmproj, n_threads=threads)
    res: dict = {"mmproj": mmproj, "threads": threads, "reps": reps}
    if image:
        t_dec, img = _median_ms(lambda: load_image(image), reps)
        t_pre, p = _median_ms(lambda: preprocess_image(img, image_tokens), reps)
        t_emb, e = _median_ms(lambda: proj.embed_image(p.pixel_values, p.positions), reps)
        res["image"] = {"file": image, "size_hw": list(img.shape[:2]), "resized_hw": list(p.resized_hw),
                        "tokens": p.n_tokens, "decode_ms": t_dec, "preprocess_ms": t_pre, "embed_ms": t_emb,
                        "total_ms": t_dec + t_pre + t_emb, "rows": list(e.shape)}
    if audio:
        t_dec, w = _median_ms(lambda: load_audio(audio), reps)
        t_fr, fr = _median_ms(lambda: audio_frames(w), reps)
        t_emb, e = _median_ms(lambda: proj.embed_audio(fr), reps)
        res["audio"] = {"file": audio, "seconds": len(w) / 16000, "tokens": int(fr.shape[0]),
                        "decode_resample_ms": t_dec, "frames_ms": t_fr, "embed_ms": t_emb,
                        "total_ms": t_dec + t_fr + t_emb, "rows": list(e.shape)}
    return res


def run_cli(args) -> int:
    res = run(args.mmproj, args.image, args.audio, args.image_tokens, args.threads, args.reps)
    if args.json:
        print(json.dumps(res))
        return 0
    if "image" in res:
        r = res["image"]
        print(f"image {r['file']} {r['size_hw'][1]}x{r['size_hw'][0]} -> {r['resized_hw'][1]}x{r['resized_hw'][0]}, "
              f"{r['tokens']} tokens: decode {r['decode_ms']:.1f} ms, resize+patchify {r['preprocess_ms']:.1f} ms, "
              f"embed {r['embed_ms']:.1f} ms, total {r['total_ms']:.1f} ms")
    if "audio" in res:
        r = res["audio"]
        print(f"audio {r['file']} {r['seconds']:.1f} s, {r['tokens']} tokens: decode+resample "
              f"{r['decode_resample_ms']:.1f} ms, frames {r['frames_ms']:.1f} ms, embed {r['embed_ms']:.1f} ms, "
              f"total {r['total_ms']:.1f} ms")
    if "image" not in res and "audio" not in res:
        print("unigemma bench media: give --image and/or --audio", file=sys.stderr)
        return 2
    return 0

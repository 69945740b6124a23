"""Bitwise logits check of the CPU backend: dump the float32 logits of a fixed set of cases with
whatever `unigemma` is on PYTHONPATH, then compare two dumps bit for bit.

    PYTHONPATH=BUILD/python python tools/logits_digest.py dump OUT.npz [--hf DIR] [--gguf-dir DIR]
        [--threads 2] [--only SUBSTR ...] [--skip-270m] [--skip-mm]
    python tools/logits_digest.py compare A.npz B.npz

Cases (inputs are fixed: seeded numpy generators and constant texts, nothing depends on the
build; the token ids fed to the model are stored too, as `.../tokens`, so a changed
tokenizer shows up as its own difference):

  tiny/<config>/<wtype>/kv_<kv>/...  every target checkpoint under --hf (default $UNIGEMMA_TEST_HF_DIR: the
      tests' tiny Gemma 4 configs default, kv_shared, alt_layout, odd_heads, *_bf16; the
      assistant_* drafters are skipped), converted with the build's own converter
      (unigemma.convert.convert) to f32, f16, q8_0, q4_0, q4_k_m (+ bf16 for the *_bf16
      checkpoints), KV cache f16 and q8_0 (+ f32 with f32 weights), through `_core.Context`:
        prefill   20-token prompt, all logits, n_ubatch 16 (two micro-batches; > window 16,
                  so the sliding rings wrap)
        decode    3 single-token `eval` steps after it
        batch     `_core.decode_batch` of 3 contexts (prompts of 3 / 9 / 18 tokens; their
                  prefill rows first), 2 batched steps
      plus tiny/default/q4_0/kv_f16/q16/... (act_precision q16).
  gemma3-270m/kv_<kv>[/q16]/...  the real Gemma 3 270M Q4_K_M (unigemma.default_model_path()):
        logits    `Model.logits` of a ~100-token prompt (all positions)
        decode    8 single-token steps after the prompt in a `_core.Context`
        batch     decode_batch of 2 contexts, 3 steps
      with KV f16 (act q8 and q16) and q8_0.
  mm/default/<f32|q8_0>/...  Model(text, mmproj=...) of the tiny `default` checkpoint and its
      converted projector: embed_image of two images, embed_audio of one clip, and
      `Model.logits` of a prompt holding both images and the clip (as tests/test_multimodal.py).
  gguf/<file>  sha256 of every converted file (uint8[32]): when the converter's output
      changed, the logits of that file are not comparable for the backend alone; reuse one set
      of files for both dumps with --gguf-dir DIR (converted into DIR when missing, else reused).

`compare` reports per case whether the arrays are bitwise equal (raw bytes, dtype and shape),
prints the max abs diff (and the number of differing elements) of those that differ, lists
cases present on one side only, and exits 1 if anything differs (0 if all equal). The dumps'
metadata (versions, ISA, package path) is printed, not compared.
Threads: --threads (default 2). ISA: set UNIGEMMA_ISA (scalar / avx2 / avx512) to pick the
kernel table; the selected ISA is recorded in the metadata.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# the multimodal tests' inputs (tests/synthetic_media.py), the same pixels and samples
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic_media import media_inputs  # noqa: E402

TINY_WTYPES = ("f32", "f16", "q8_0", "q4_0", "q4_k_m")
PROMPT_LEN, N_UBATCH, DECODE_STEPS = 20, 16, 3
BATCH_PROMPTS, BATCH_STEPS = (3, 9, 18), 2
TEXT_270M = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
             "combined movable metal type, oil-based ink and a screw press adapted from wine making. Within "
             "fifty years presses were running in more than two hundred European cities, and the price of "
             "books fell so far that a clerk could own a small library. Scholars argue about how much of the "
             "Reformation, the scientific revolution and the rise of vernacular literature")
MM_PROMPT = "<|image|>Compare this with<|image|> and listen:<|audio|> What is"


def _log(msg: str) -> None:
    print(f"logits_digest: {msg}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> np.ndarray:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return np.frombuffer(h.digest(), np.uint8).copy()


def _targets(hf: Path) -> list[str]:
    out = []
    for d in sorted(hf.iterdir()):
        if not (d / "config.json").is_file() or d.name.startswith("assistant"):
            continue
        cfg = json.loads((d / "config.json").read_text())
        if "text_config" in cfg and "assistant" not in str(cfg.get("model_type", "")):
            out.append(d.name)
    return out


class Dump:
    def __init__(self, only):
        self.arrays: dict[str, np.ndarray] = {}
        self.skipped: list[str] = []
        self.only = only

    def wanted(self, name: str) -> bool:
        return not self.only or any(s in name for s in self.only)

    def put(self, name: str, arr) -> None:
        a = np.ascontiguousarray(arr)
        if name in self.arrays:
            raise SystemExit(f"duplicate case {name}")
        self.arrays[name] = a


def _convert(hf_dir: Path, wtype: str, gguf_dir: Path, threads: int):
    from unigemma.convert import convert

    prefix = gguf_dir / f"{hf_dir.name}-{wtype}"
    text, mmproj = Path(f"{prefix}.gguf"), Path(f"{prefix}-mmproj.gguf")
    if not text.is_file():
        convert(hf_dir, outtype=wtype, out_prefix=prefix, threads=threads, progress=False)
    return text, (mmproj if mmproj.is_file() else None)


def _decode_stream(core, tm, prompt, steps_tokens, ctx_kw) -> np.ndarray:
    ctx = core.Context(tm, **ctx_kw)
    ctx.eval(np.asarray(prompt, np.int32), all_logits=False)
    return np.stack([ctx.eval(np.array([t], np.int32))[0] for t in steps_tokens])


def _batch_stream(core, tm, prompts, steps, ctx_kw) -> np.ndarray:
    ctxs = [core.Context(tm, **ctx_kw) for _ in prompts]
    rows = [c.eval(np.asarray(p, np.int32))[0] for c, p in zip(ctxs, prompts)]
    for s in steps:
        rows.extend(core.decode_batch(ctxs, np.asarray(s, np.int32)))
    return np.stack(rows)


def tiny_cases(d: Dump, hf: Path, gguf_dir: Path, threads: int) -> None:
    from unigemma import _core as core
    from unigemma.convert import ConversionError

    rng = np.random.default_rng(1234)
    prompt = rng.integers(300, 2000, size=PROMPT_LEN).astype(np.int32)
    dec = rng.integers(300, 2000, size=DECODE_STEPS).astype(np.int32)
    bprompts = [rng.integers(300, 2000, size=n).astype(np.int32) for n in BATCH_PROMPTS]
    bsteps = [rng.integers(300, 2000, size=len(BATCH_PROMPTS)).astype(np.int32) for _ in range(BATCH_STEPS)]
    d.put("inputs/tiny/prompt", prompt)
    d.put("inputs/tiny/decode", dec)
    d.put("inputs/tiny/batch", np.concatenate(bprompts + bsteps))
    n_ctx = 64
    for cfg in _targets(hf):
        wtypes = TINY_WTYPES + (("bf16",) if cfg.endswith("_bf16") else ())
        for wt in wtypes:
            base = f"tiny/{cfg}/{wt}"
            kvs = ("f16", "q8_0") + (("f32",) if wt == "f32" else ())
            runs = [(kv, "q8") for kv in kvs] + ([("f16", "q16")] if (cfg, wt) == ("default", "q4_0") else [])
            if not any(d.wanted(f"{base}/kv_{kv}" + ("/q16" if p == "q16" else "")) for kv, p in runs):
                continue
            try:
                text, _ = _convert(hf / cfg, wt, gguf_dir, threads)
            except ConversionError as e:
                d.skipped.append(f"{base}: converter refused ({e})")
                _log(f"skip {base}: {e}")
                continue
            d.put(f"gguf/{text.name}", _sha256(text))
            tm = core.TextModel(str(text))
            for kv, prec in runs:
                name = f"{base}/kv_{kv}" + ("/q16" if prec == "q16" else "")
                if not d.wanted(name):
                    continue
                t0 = time.perf_counter()
                kw = dict(n_ctx=n_ctx, n_ubatch=N_UBATCH, n_threads=threads, k_type=kv, v_type=kv,
                          act_precision=prec)
                try:
                    ctx = core.Context(tm, **kw)
                except Exception as e:  # e.g. a quantized KV type the head_dim cannot take
                    d.skipped.append(f"{name}: {type(e).__name__}: {e}")
                    _log(f"skip {name}: {e}")
                    continue
                d.put(f"{name}/prefill", ctx.eval(prompt, all_logits=True))
                d.put(f"{name}/decode", np.stack([ctx.eval(np.array([t], np.int32))[0] for t in dec]))
                d.put(f"{name}/batch", _batch_stream(core, tm, bprompts, bsteps, kw))
                _log(f"{name}: {time.perf_counter() - t0:.1f} s")
            del tm


def gemma3_cases(d: Dump, threads: int) -> None:
    import unigemma
    from unigemma import _core as core

    path = unigemma.default_model_path()
    runs = [("f16", "q8"), ("f16", "q16"), ("q8_0", "q8")]
    if not any(d.wanted(f"gemma3-270m/kv_{kv}" + ("/q16" if p == "q16" else "")) for kv, p in runs):
        return
    d.put("gguf/gemma-3-270m", _sha256(Path(path)))
    rng = np.random.default_rng(270)
    dec = rng.integers(300, 20000, size=8).astype(np.int32)
    bsteps = [rng.integers(300, 20000, size=2).astype(np.int32) for _ in range(3)]
    for kv, prec in runs:
        name = f"gemma3-270m/kv_{kv}" + ("/q16" if prec == "q16" else "")
        if not d.wanted(name):
            continue
        t0 = time.perf_counter()
        m = unigemma.Model(path, n_ctx=256, n_threads=threads, kv_type=kv, act_precision=prec)
        ids = np.asarray(m.tokenize(TEXT_270M), np.int32)
        d.put(f"{name}/tokens", ids)
        d.put(f"{name}/logits", m.logits([int(t) for t in ids]))
        kw = dict(n_ctx=256, n_ubatch=512, n_threads=threads, k_type=kv, v_type=kv, act_precision=prec)
        d.put(f"{name}/decode", _decode_stream(core, m.text_model, ids, dec, kw))
        d.put(f"{name}/batch", _batch_stream(core, m.text_model, [ids[:37], ids[:61]], bsteps, kw))
        _log(f"{name}: {time.perf_counter() - t0:.1f} s")
        del m


def mm_cases(d: Dump, hf: Path, gguf_dir: Path, threads: int) -> None:
    import unigemma

    if not (hf / "default" / "config.json").is_file():
        d.skipped.append("mm: no default checkpoint")
        return
    img1, img2, audio = media_inputs(3)
    media = [("image", img1), ("image", img2), ("audio", audio)]
    for wt, kv in (("f32", "f32"), ("q8_0", "f16")):
        name = f"mm/default/{wt}"
        if not d.wanted(name):
            continue
        t0 = time.perf_counter()
        text, mmproj = _convert(hf / "default", wt, gguf_dir, threads)
        if mmproj is None:
            d.skipped.append(f"{name}: the converter wrote no projector")
            continue
        d.put(f"gguf/{mmproj.name}", _sha256(mmproj))
        m = unigemma.Model(str(text), mmproj=str(mmproj), image_tokens=70, n_ctx=512, kv_type=kv, n_ubatch=64,
                           n_threads=threads)
        d.put(f"{name}/embed_image1", m.embed_image(img1))
        d.put(f"{name}/embed_image2", m.embed_image(img2))
        d.put(f"{name}/embed_audio", m.embed_audio(audio))
        d.put(f"{name}/tokens", np.asarray(m._text_prompt(MM_PROMPT, media, add_bos=True).ids, np.int32))
        d.put(f"{name}/logits", m.logits(MM_PROMPT, media=media))
        _log(f"{name}: {time.perf_counter() - t0:.1f} s")
        del m


def dump(a) -> int:
    import unigemma

    d = Dump(a.only)
    if not a.hf:
        raise SystemExit("logits_digest: give --hf DIR or set UNIGEMMA_TEST_HF_DIR (tiny checkpoints: python tests/fixtures/tiny_checkpoints.py DIR)")
    hf = Path(a.hf)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="logits_digest-") as tmp:
        gguf_dir = Path(a.gguf_dir) if a.gguf_dir else Path(tmp)
        gguf_dir.mkdir(parents=True, exist_ok=True)
        if hf.is_dir():
            tiny_cases(d, hf, gguf_dir, a.threads)
            if not a.skip_mm:
                mm_cases(d, hf, gguf_dir, a.threads)
        else:
            d.skipped.append(f"tiny, mm: no checkpoint directory {hf}")
        if not a.skip_270m:
            gemma3_cases(d, a.threads)
    info = unigemma.build_info()
    meta = {"package": str(Path(unigemma.__file__).resolve().parent), "version": getattr(unigemma, "__version__", None),
            "selected_isa": info.get("selected_isa"), "UNIGEMMA_ISA": os.environ.get("UNIGEMMA_ISA"),
            "threads": a.threads, "hf": str(hf), "gguf_dir": a.gguf_dir, "skipped": d.skipped,
            "only": a.only, "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "seconds": round(time.perf_counter() - t0, 1)}
    out = Path(a.out)
    tmp_out = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp_out, __meta__=np.array(json.dumps(meta)), **d.arrays)
    os.replace(tmp_out, out)
    n_bytes = sum(x.nbytes for x in d.arrays.values())
    _log(f"wrote {out}: {len(d.arrays)} arrays, {n_bytes / 2**20:.0f} MiB, ISA {meta['selected_isa']}, "
         f"{meta['seconds']} s; skipped {len(d.skipped)}")
    for s in d.skipped:
        _log(f"  skipped {s}")
    return 0


def _bits(x: np.ndarray) -> np.ndarray:
    """The raw bytes of x (C order)."""
    return np.ascontiguousarray(x).reshape(-1).view(np.uint8)


def compare(a) -> int:
    A, B = np.load(a.a, allow_pickle=False), np.load(a.b, allow_pickle=False)
    for tag, f, z in (("A", a.a, A), ("B", a.b, B)):
        meta = json.loads(str(z["__meta__"])) if "__meta__" in z.files else {}
        print(f"{tag} {f}: package {meta.get('package')}, ISA {meta.get('selected_isa')} "
              f"(UNIGEMMA_ISA={meta.get('UNIGEMMA_ISA')}), threads {meta.get('threads')}, "
              f"created {meta.get('created')}, skipped {len(meta.get('skipped', []))}")
    ka = [k for k in A.files if k != "__meta__"]
    kb = set(k for k in B.files if k != "__meta__")
    n_eq = n_diff = 0
    only, differing = [], set()
    for k in ka:
        if k not in kb:
            only.append(f"only in A: {k}")
            continue
        x, y = A[k], B[k]
        if x.dtype == y.dtype and x.shape == y.shape and np.array_equal(_bits(x), _bits(y)):
            n_eq += 1
            if a.verbose:
                print(f"equal    {k} {x.dtype}{list(x.shape)}")
            continue
        n_diff += 1
        differing.add(k)
        if x.shape != y.shape or x.dtype != y.dtype:
            print(f"DIFFERS  {k}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
        elif np.issubdtype(x.dtype, np.floating):
            dx = np.abs(x.astype(np.float64) - y.astype(np.float64))
            u = np.dtype(f"u{x.dtype.itemsize}")
            nd = int(np.count_nonzero(x.reshape(-1).view(u) != y.reshape(-1).view(u)))
            finite = np.isfinite(dx)
            mx = float(dx[finite].max()) if finite.any() else float("nan")
            scale = float(np.abs(y).max()) if y.size else 0.0
            print(f"DIFFERS  {k} {x.dtype}{list(x.shape)}: max abs diff {mx:.3e} (max |B| {scale:.3g}), "
                  f"{nd} of {x.size} elements differ" + ("" if finite.all() else ", non-finite differences"))
        else:
            nd = int(np.count_nonzero(x.reshape(-1) != y.reshape(-1)))
            print(f"DIFFERS  {k} {x.dtype}{list(x.shape)}: {nd} of {x.size} elements differ")
    only += [f"only in B: {k}" for k in sorted(kb - set(ka))]
    for s in only:
        print(s)
    print(f"{n_eq} equal, {n_diff} differ, {len(only)} on one side only")
    if any(k.startswith("gguf/") and k in differing for k in ka):
        print("note: a differing gguf/<file> digest means the converter wrote different bytes: the logits of "
              "that file then compare the converter too (dump both with the same --gguf-dir to isolate the backend)")
    return 1 if (n_diff or only) else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("dump", help="compute the cases with the unigemma on PYTHONPATH")
    p.add_argument("out")
    p.add_argument("--hf", default=os.environ.get("UNIGEMMA_TEST_HF_DIR"),
                   help="directory of tiny HF checkpoints (default $UNIGEMMA_TEST_HF_DIR; build one with "
                        "`python tests/fixtures/tiny_checkpoints.py DIR`)")
    p.add_argument("--gguf-dir", default=None, help="convert into / reuse converted files from DIR "
                   "(default: a fresh temporary directory, converted by this build)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="*", default=None, metavar="SUBSTR", help="only cases whose name holds one of these")
    p.add_argument("--skip-270m", action="store_true")
    p.add_argument("--skip-mm", action="store_true")
    c = sub.add_parser("compare", help="bitwise comparison of two dumps (exit 1 if any case differs)")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("-v", "--verbose", action="store_true", help="list the equal cases too")
    a = ap.parse_args(argv)
    return dump(a) if a.cmd == "dump" else compare(a)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Compare unigemma's HF -> GGUF converter with llama.cpp's own tools (used as an oracle only).

For every (target, assistant) checkpoint pair:

1. convert with llama.cpp's ``convert_hf_to_gguf.py`` (text, ``--mmproj``, assistant) and with
   ``unigemma convert`` for the converter outtypes (f32, f16, bf16, q8_0);
2. compare each file pair: tensor names / shapes (ne) / types, tensor order, raw tensor bytes,
   and every metadata key llama.cpp writes (type and value; our ``unigemma.*`` keys and the
   drafter's centroid tensors are expected extras);
3. q4_0 / q4_k_m: ``llama-quantize THEIR_F16 OUT Q4_0|Q4_K_M`` (text and assistant) against our
   ``--outtype q4_0|q4_k_m``; every non-K-quant tensor must be byte-identical, K-quant tensors
   are counted (informational).  Our mmproj for these outtypes follows the q8_0 converter rules,
   so it is compared with llama.cpp's q8_0 mmproj;
4. load our files in llama.cpp: ``llama-completion`` (text), ``llama-mtmd-cli`` with an image
   and a WAV (mmproj), ``llama-speculative-simple --spec-type draft-mtp`` (assistant as the
   MTP drafter of its target); the same runs on llama.cpp's files must print the same text;
   warnings printed for our files but not for llama.cpp's are reported;
5. print a PASS/FAIL table; exit status 1 on any FAIL (a different tensor order is a FAIL
   unless ``--ignore-order``).

Usage::

    python3 tools/compare_with_llamacpp.py --llama-cpp /work/ext/llama_cpp_python-0.3.36 \
        --checkpoints /tmp/ck --work /tmp/cmpwork [--jobs 2] [--reuse]

No network is used (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are set for the subprocesses).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import wave
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONV_OTS = ("f32", "f16", "bf16", "q8_0")
QUANT_OTS = {"q4_0": "Q4_0", "q4_k_m": "Q4_K_M"}
KQUANTS = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"}
DEFAULT_PAIRS = "default:assistant_default,kv_shared:assistant_kv_shared,alt_layout:assistant_alt_layout," \
                "default_bf16:assistant_default_bf16"
# Tensors llama.cpp's converter drops but we keep (reference decision 5).
EXPECTED_EXTRA_TENSORS = {"assistant": {"masked_embd_centroids.weight", "masked_embd_ordering"}}
KINDS = ("text", "mmproj", "assistant")

RESULTS: list[dict] = []
COMMANDS: list[str] = []
IGNORE_ORDER = False
SHARED_WARNINGS: dict[str, set] = {}  # printed by llama.cpp for its own files too


def record(cfg, kind, ot, check, status, detail=""):
    RESULTS.append(dict(cfg=cfg, kind=kind, ot=ot, check=check, status=status, detail=detail))


def run(cmd, log: Path, env=None, timeout=900, stdout_file: Path | None = None):
    """Run a command, stderr (+ stdout unless stdout_file) to log; returns (rc, wall seconds)."""
    COMMANDS.append(" ".join(str(c) for c in cmd))
    t0 = time.time()
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **(env or {}))
    with open(log, "w") as lf:
        out = open(stdout_file, "w") if stdout_file else lf
        try:
            rc = subprocess.run([str(c) for c in cmd], stdout=out, stderr=lf, stdin=subprocess.DEVNULL,
                                env=full_env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
        finally:
            if stdout_file:
                out.close()
    return rc, time.time() - t0


# --------------------------------------------------------------------------------------------
# GGUF reading: a small parser of our own (gguf-py's GGUFReader takes ~20 s on a 262144-token
# vocabulary); only the type sizes come from gguf-py's constants
# --------------------------------------------------------------------------------------------
_VT = {0: "UINT8", 1: "INT8", 2: "UINT16", 3: "INT16", 4: "UINT32", 5: "INT32", 6: "FLOAT32", 7: "BOOL",
       8: "STRING", 9: "ARRAY", 10: "UINT64", 11: "INT64", 12: "FLOAT64"}
_FMT = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class G:
    def __init__(self, path: Path):
        import mmap  # noqa: PLC0415

        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType  # noqa: PLC0415
        self.path = path
        with open(path, "rb") as f:
            self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        b = self.buf
        if b[:4] != b"GGUF":
            raise ValueError("not a GGUF file")
        self.version, n_t, n_kv = struct.unpack_from("<IQQ", b, 4)
        off = 24
        self.kv = {}
        for _ in range(n_kv):
            key, off = self._str(off)
            (t,), off = struct.unpack_from("<I", b, off), off + 4
            if t == 9:
                (et, n), off = struct.unpack_from("<IQ", b, off), off + 12
                if et == 8:
                    val = []
                    for _ in range(n):
                        s, off = self._str(off)
                        val.append(s)
                else:
                    val = list(struct.unpack_from(f"<{n}{_FMT[et]}", b, off))
                    off += n * struct.calcsize(_FMT[et])
                self.kv[key] = (["ARRAY", _VT[et]], val)
            elif t == 8:
                val, off = self._str(off)
                self.kv[key] = (["STRING"], val)
            else:
                self.kv[key] = ([_VT[t]], struct.unpack_from("<" + _FMT[t], b, off)[0])
                off += struct.calcsize(_FMT[t])
        infos = []
        for _ in range(n_t):
            name, off = self._str(off)
            (nd,), off = struct.unpack_from("<I", b, off), off + 4
            ne = struct.unpack_from(f"<{nd}Q", b, off)
            off += 8 * nd
            t, o = struct.unpack_from("<IQ", b, off)
            off += 12
            infos.append((name, tuple(ne), t, o))
        align = self.kv.get("general.alignment", (None, 32))[1]
        data0 = (off + align - 1) // align * align
        self.tensors, self.order = {}, []
        for name, ne, t, o in infos:
            qt = GGMLQuantizationType(t)
            block, size = GGML_QUANT_SIZES[qt]
            n = 1
            for x in ne:
                n *= x
            self.tensors[name] = (ne, qt, data0 + o, n // block * size)
            self.order.append(name)

    def _str(self, off):
        (n,) = struct.unpack_from("<Q", self.buf, off)
        return self.buf[off + 8:off + 8 + n].decode("utf-8", errors="surrogateescape"), off + 8 + n

    def ttype(self, n):
        return self.tensors[n][1].name

    def ne(self, n):
        return self.tensors[n][0]

    def raw(self, n):
        import numpy as np  # noqa: PLC0415
        _, _, o, nb = self.tensors[n]
        return np.frombuffer(self.buf, dtype=np.uint8, count=nb, offset=o)


def short(v, n=80):
    if isinstance(v, list):
        return f"list[{len(v)}] {str(v[:4])[:n]}{'...' if len(v) > 4 else ''}"
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


def compare_files(cfg, kind, ot, theirs: Path, ours: Path, strict_types=None):
    """strict_types: None = every tensor must be byte-identical; else the set of types that
    must be (others are counted, informational)."""
    import numpy as np  # noqa: PLC0415
    try:
        a, b = G(theirs), G(ours)
    except Exception as e:  # noqa: BLE001
        record(cfg, kind, ot, "read", "FAIL", f"cannot read: {e}")
        return
    extra_ok = EXPECTED_EXTRA_TENSORS.get(kind, set())
    # names / shapes / types
    probs = []
    missing = [n for n in a.order if n not in b.tensors]
    extra = [n for n in b.order if n not in a.tensors]
    if missing:
        probs.append(f"missing in ours: {missing}")
    if [n for n in extra if n not in extra_ok]:
        probs.append(f"extra in ours: {[n for n in extra if n not in extra_ok]}")
    common = [n for n in a.order if n in b.tensors]
    for n in common:
        if a.ne(n) != b.ne(n):
            probs.append(f"{n}: ne theirs {a.ne(n)} ours {b.ne(n)}")
        if a.ttype(n) != b.ttype(n):
            probs.append(f"{n}: type theirs {a.ttype(n)} ours {b.ttype(n)}")
    info = f"{len(common)} tensors" + (f"; expected extras in ours: {[(n, b.ttype(n)) for n in extra if n in extra_ok]}"
                                       if any(n in extra_ok for n in extra) else "")
    record(cfg, kind, ot, "tensors", "FAIL" if probs else "PASS", "; ".join(probs) if probs else info)
    # order
    ours_order = [n for n in b.order if n in a.tensors]
    if ours_order == [n for n in a.order if n in b.tensors]:
        record(cfg, kind, ot, "order", "PASS", "")
    else:
        i = next(i for i, (x, y) in enumerate(zip(ours_order, common)) if x != y)
        record(cfg, kind, ot, "order", "INFO" if IGNORE_ORDER else "FAIL", f"first difference at #{i}: theirs {common[i]} ours {ours_order[i]}")
    # bytes
    bad, kq_same, kq_total, same, kq_diff = [], 0, 0, 0, []
    for n in common:
        if a.ttype(n) != b.ttype(n) or a.ne(n) != b.ne(n):
            continue
        ra, rb = a.raw(n), b.raw(n)
        eq = ra.shape == rb.shape and bool(np.array_equal(ra, rb))
        if strict_types is None or a.ttype(n) not in KQUANTS:
            if eq:
                same += 1
            else:
                nd = int((ra != rb).sum()) if ra.shape == rb.shape else -1
                first = int(np.argmax(ra != rb)) if nd > 0 else -1
                bad.append(f"{n} ({a.ttype(n)}): {nd} of {ra.size} bytes differ, first at byte {first}"
                           + _maxdiff(a, b, n))
        else:
            kq_total += 1
            kq_same += eq
            if not eq:
                kq_diff.append(f"{n} ({a.ttype(n)}{_maxdiff(a, b, n)})")
    kq = f"; K-quant tensors byte-identical: {kq_same}/{kq_total} (informational)" if kq_total else ""
    record(cfg, kind, ot, "bytes", "FAIL" if bad else "PASS",
           ("; ".join(bad) if bad else f"{same} tensors identical") + kq)
    if kq_total:
        record(cfg, kind, ot, "kquant-bytes", "INFO", f"{kq_same}/{kq_total} K-quant tensors byte-identical"
               + (f"; differing: {kq_diff}" if kq_diff else ""))
    # metadata
    probs = []
    for k, (ta, va) in a.kv.items():
        if k not in b.kv:
            probs.append(f"{k} missing in ours (theirs {'/'.join(ta)} {short(va)})")
            continue
        tb, vb = b.kv[k]
        if ta != tb:
            probs.append(f"{k}: type theirs {'/'.join(ta)} ours {'/'.join(tb)} (values {short(va)} / {short(vb)})")
        elif va != vb:
            if isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb):
                i = next(i for i, (x, y) in enumerate(zip(va, vb)) if x != y)
                ndiff = sum(x != y for x, y in zip(va, vb))
                probs.append(f"{k}: {ndiff} of {len(va)} entries differ, first [{i}] theirs {va[i]!r} ours {vb[i]!r}")
            else:
                probs.append(f"{k}: theirs {short(va)} ours {short(vb)}")
    extras = [k for k in b.kv if k not in a.kv]
    odd = [k for k in extras if not k.startswith("unigemma.")]
    if odd:
        probs.append(f"extra non-unigemma keys in ours: {[(k, short(b.kv[k][1], 40)) for k in odd]}")
    record(cfg, kind, ot, "metadata", "FAIL" if probs else "PASS",
           "; ".join(probs) if probs else f"{len(a.kv)} keys equal; ours adds {len(extras)} unigemma.* keys")


def _maxdiff(a, b, n):
    try:
        import numpy as np  # noqa: PLC0415
        from gguf.quants import dequantize  # noqa: PLC0415
        qt = a.tensors[n][1]
        da = dequantize(a.raw(n), qt).astype(np.float64)
        db = dequantize(b.raw(n), qt).astype(np.float64)
        return f", max|theirs-ours| {float(np.abs(da - db).max()):.3g}"
    except Exception:  # noqa: BLE001
        return ""


# --------------------------------------------------------------------------------------------
# Inputs for the multimodal runs (no Pillow needed)
# --------------------------------------------------------------------------------------------
def write_png(path: Path, w=96, h=64):
    rows = b"".join(b"\x00" + b"".join(bytes(((x * 255) // w, (y * 255) // h, (x * y) % 256)) for x in range(w))
                    for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def write_wav(path: Path, seconds=1.0, sr=16000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / sr)))
                               for i in range(int(seconds * sr))))


# --------------------------------------------------------------------------------------------
# llama.cpp load / decode checks
# --------------------------------------------------------------------------------------------
_NOISE = re.compile(r"0x[0-9a-fA-F]+|\d+\.\d+ ?(ms|s|MiB|GiB|t/s)|\d{2,}\.\d{2}\.\d{3}\.\d{3}")


def warn_lines(log: Path) -> list[str]:
    """Warning / error lines of a llama.cpp log, with addresses and timings masked."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"^\d+\.\d+\.\d+\.\d+ ([WE]) (.*)$", line)
        if m or re.search(r"\b(error|warning|failed|GGML_ASSERT)\b", line, re.I):
            out.append(_NOISE.sub("#", m.group(1) + " " + m.group(2) if m else line.strip()))
    return out


def run_pair(bins, name, cfg, kind, ot, argv_theirs, argv_ours, logdir: Path, extract):
    """Run the same llama.cpp command on llama.cpp's files and on ours; compare."""
    res = {}
    for who, argv in (("theirs", argv_theirs), ("ours", argv_ours)):
        log, out = logdir / f"{cfg}.{ot}.{name}.{who}.log", logdir / f"{cfg}.{ot}.{name}.{who}.out"
        rc, dt = run([bins / argv[0], *argv[1:]], log, stdout_file=out)
        text = out.read_text(errors="replace")
        res[who] = (rc, text, log, dt, extract(text + log.read_text(errors="replace")))
    (rt, tt, lt, _, xt), (ro, to, lo, dto, xo) = res["theirs"], res["ours"]
    if ro != 0:
        tail = " | ".join(lo.read_text(errors="replace").strip().splitlines()[-4:])
        record(cfg, kind, ot, f"load:{name}", "FAIL", f"rc={ro} (theirs rc={rt}); log {lo}: {tail}")
        return
    wt = set(warn_lines(lt))
    new = [w for w in dict.fromkeys(warn_lines(lo)) if w not in wt]
    same = to == tt and xo == xt
    detail = f"{dto:.1f}s; output {'==' if same else '!='} llama.cpp's files" + (f" ({xo})" if xo else "")
    if not same:
        detail += f"; theirs {tt.strip()[-60:]!r} {xt} ours {to.strip()[-60:]!r} {xo}"
    if new:
        detail += f"; warnings only with our files: {new}"
    ok = same and rt == 0 and (not xo or "n_drafted=0" not in xo)
    record(cfg, kind, ot, f"load:{name}", "PASS" if ok else "FAIL", detail)
    for w in set(warn_lines(lo)) & wt:
        SHARED_WARNINGS.setdefault(w, set()).add(name)


def spec_stats(text):
    d = re.search(r"n_drafted\s*=\s*(\d+)", text)
    a = re.search(r"n_accept\s*=\s*(\d+)", text)
    return f"n_drafted={d.group(1) if d else '?'} n_accept={a.group(1) if a else '?'}"


# --------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-cpp", required=True, type=Path,
                    help="llama-cpp-python source root (with vendor/llama.cpp and build/bin) or a llama.cpp tree")
    ap.add_argument("--bin", type=Path, help="llama.cpp binaries (default: LLAMA_CPP/build/bin)")
    ap.add_argument("--checkpoints", required=True, type=Path, help="output dir of tests/fixtures/tiny_checkpoints.py")
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--pairs", default=DEFAULT_PAIRS, help="comma list of TARGET:ASSISTANT checkpoint dir names")
    ap.add_argument("--outtypes", default=",".join(CONV_OTS), help="converter outtypes")
    ap.add_argument("--quants", default=",".join(QUANT_OTS), help="llama-quantize outtypes")
    ap.add_argument("--mm-outtypes", default="f16,q8_0,q4_k_m", help="outtypes for the image/audio/drafter runs")
    ap.add_argument("--unigemma-pythonpath", type=Path,
                    help="dir holding the unigemma package with its _core*.so (default: a copy of python/unigemma "
                         "plus build-dev/_core*.so staged in WORK/pkg)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reuse", action="store_true", help="keep existing llama.cpp outputs in WORK (ours are redone)")
    ap.add_argument("--no-run", action="store_true", help="skip the llama.cpp load/decode runs")
    ap.add_argument("--ignore-order", action="store_true", help="a different tensor order is reported, not a FAIL")
    a = ap.parse_args(argv)
    global IGNORE_ORDER
    IGNORE_ORDER = a.ignore_order

    root = a.llama_cpp / "vendor" / "llama.cpp" if (a.llama_cpp / "vendor" / "llama.cpp").is_dir() else a.llama_cpp
    bins = a.bin or (a.llama_cpp / "build" / "bin")
    gguf_py = root / "gguf-py"
    sys.path.insert(0, str(gguf_py))
    work = a.work.resolve()
    logs, th_dir, us_dir = work / "logs", work / "theirs", work / "ours"
    for d in (logs, th_dir, us_dir):
        d.mkdir(parents=True, exist_ok=True)
    pkg = a.unigemma_pythonpath
    if pkg is None:
        pkg = work / "pkg"
        shutil.rmtree(pkg, ignore_errors=True)
        shutil.copytree(REPO / "python" / "unigemma", pkg / "unigemma",
                        ignore=shutil.ignore_patterns("__pycache__"))
        cores = sorted((REPO / "build-dev").glob("_core*.so"))
        if not cores:
            sys.exit("no build-dev/_core*.so: build the extension or pass --unigemma-pythonpath")
        shutil.copy(cores[0], pkg / "unigemma")
    pairs = []  # (label, target dir name, assistant dir name)
    for item in filter(None, a.pairs.split(",")):
        cfg, asst = item.split(":")
        pairs.append((cfg if asst == f"assistant_{cfg}" else f"{cfg}+{asst}", cfg, asst))
    conv_ots = [o for o in a.outtypes.split(",") if o]
    q_ots = [o for o in a.quants.split(",") if o]
    all_ots = conv_ots + q_ots
    times = {}

    def th(src, kind, ot):  # src: the checkpoint dir name the file comes from
        if kind == "mmproj" and ot in QUANT_OTS:
            ot = "q8_0"  # our policy: mmproj uses the q8_0 converter rules for llama-quantize outtypes
        return th_dir / src / f"{kind}.{ot}.gguf"

    def us(label, kind, ot):
        return us_dir / label / (ot + ("" if kind == "text" else f"-{kind}") + ".gguf")

    # ---- 1. conversions --------------------------------------------------------------------
    conv = root / "convert_hf_to_gguf.py"
    tasks, seen = [], set()
    ots_needed = sorted(set(conv_ots) | ({"f16", "q8_0"} if q_ots else set()))
    for label, cfg, asst in pairs:
        for ot in ots_needed:
            for kind, src, extra in (("text", cfg, []), ("mmproj", cfg, ["--mmproj"]), ("assistant", asst, [])):
                out = th(src, kind, ot)
                out.parent.mkdir(exist_ok=True)
                if out in seen or (a.reuse and out.exists()):
                    continue
                seen.add(out)
                tasks.append((f"theirs {src} {kind} {ot}", [a.python, conv, a.checkpoints / src, *extra, "--outtype", ot,
                                                            "--outfile", out], logs / f"conv.theirs.{src}.{kind}.{ot}.log",
                              {"PYTHONPATH": str(gguf_py)}))
        (us_dir / label).mkdir(exist_ok=True)
        for ot in all_ots:
            tasks.append((f"ours {label} {ot}", [a.python, "-m", "unigemma", "convert", a.checkpoints / cfg, "--outtype",
                                                 ot, "--assistant", a.checkpoints / asst, "-o", us_dir / label / ot, "-q",
                                                 "-t", "1"], logs / f"conv.ours.{label}.{ot}.log", {"PYTHONPATH": str(pkg)}))

    def do(task):
        label, cmd, log, env = task
        rc, dt = run(cmd, log, env=env)
        return label, rc, dt, log

    t0 = time.time()
    with ThreadPoolExecutor(a.jobs) as ex:
        conv_res = list(ex.map(do, tasks))
    times["conversions"] = time.time() - t0
    for label, rc, dt, log in conv_res:
        who, cfg, *rest = label.split()
        if rc != 0:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            record(cfg, rest[0] if who == "theirs" else "all", rest[-1], f"convert:{who}", "FAIL", f"rc={rc}: {tail}")
    sum_th = sum(dt for lb, _, dt, _ in conv_res if lb.startswith("theirs"))
    sum_us = sum(dt for lb, _, dt, _ in conv_res if lb.startswith("ours"))
    times["  (sum of llama.cpp converter runs)"] = sum_th
    times["  (sum of unigemma convert runs)"] = sum_us

    # ---- 2. llama-quantize -----------------------------------------------------------------
    t0 = time.time()
    qtasks, seen = [], set()
    for _, cfg, asst in pairs:
        for ot in q_ots:
            for kind, src in (("text", cfg), ("assistant", asst)):
                out = th(src, kind, ot)
                if out in seen or (a.reuse and out.exists()):
                    continue
                seen.add(out)
                qtasks.append((f"quant {src} {kind} {ot}", [bins / "llama-quantize", th(src, kind, "f16"), out,
                                                            QUANT_OTS[ot]], logs / f"quant.{src}.{kind}.{ot}.log", None))
    with ThreadPoolExecutor(a.jobs) as ex:
        for label, rc, dt, log in ex.map(do, qtasks):
            if rc != 0:
                _, cfg, kind, ot = label.split()
                record(cfg, kind, ot, "llama-quantize", "FAIL", f"rc={rc}, see {log}")
    times["llama-quantize"] = time.time() - t0

    # ---- 3. file comparisons ---------------------------------------------------------------
    t0 = time.time()
    for label, cfg, asst in pairs:
        for ot in all_ots:
            for kind in KINDS:
                t, o = th(asst if kind == "assistant" else cfg, kind, ot), us(label, kind, ot)
                if not t.exists() or not o.exists():
                    record(label, kind, ot, "files", "FAIL", f"missing: {[str(p) for p in (t, o) if not p.exists()]}")
                    continue
                strict = None if (ot in CONV_OTS or kind == "mmproj") else KQUANTS
                compare_files(label, kind, ot, t, o, strict)
    times["file comparisons"] = time.time() - t0

    # ---- 4. llama.cpp load / decode --------------------------------------------------------
    t0 = time.time()
    if not a.no_run:
        png, wav = work / "probe.png", work / "probe.wav"
        write_png(png)
        write_wav(wav)
        runs = []
        for label, cfg, asst in pairs:
            for ot in all_ots:
                tt, ut = th(cfg, "text", ot), us(label, "text", ot)
                if not (tt.exists() and ut.exists()):
                    continue
                runs.append(("completion", label, "text", ot, lambda _t: "",
                             lambda m: ["llama-completion", "-m", m[0], "-p", "hello", "-n", "4", "--temp", "0",
                                        "-no-cnv", "-t", "1"], (tt,), (ut,)))
                if ot not in a.mm_outtypes.split(","):
                    continue
                tm, um = th(cfg, "mmproj", ot), us(label, "mmproj", ot)
                ta, ua = th(asst, "assistant", ot), us(label, "assistant", ot)
                for name, media in (("image", ["--image", png]), ("audio", ["--audio", wav])):
                    runs.append((name, label, "mmproj", ot, lambda _t: "",
                                 lambda m, media=media: ["llama-mtmd-cli", "-m", m[0], "--mmproj", m[1], *media, "-p",
                                                         "describe", "-n", "4", "--temp", "0", "--jinja", "-t", "1"],
                                 (tt, tm), (ut, um)))
                runs.append(("spec", label, "assistant", ot, spec_stats,
                             lambda m: ["llama-speculative-simple", "-m", m[0], "-md", m[1], "--spec-type", "draft-mtp",
                                        "-p", "hello world", "-n", "16", "--temp", "0", "-t", "1"], (tt, ta), (ut, ua)))

        def do_run(r):
            name, cfg, kind, ot, extract, mk, tfiles, ufiles = r
            if not all(p.exists() for p in (*tfiles, *ufiles)):
                record(cfg, kind, ot, f"load:{name}", "FAIL", "input files missing")
                return
            run_pair(bins, name, cfg, kind, ot, mk(tfiles), mk(ufiles), logs, extract)
        with ThreadPoolExecutor(a.jobs) as ex:
            list(ex.map(do_run, runs))
    times["llama.cpp load/decode runs"] = time.time() - t0

    # ---- 5. report -------------------------------------------------------------------------
    (work / "commands.txt").write_text("\n".join(COMMANDS) + "\n")
    return report(pairs, all_ots, times, work)


def report(pairs, ots, times, work) -> int:
    cols = ["tensors", "order", "bytes", "metadata", "load"]
    idx = {}
    for r in RESULTS:
        col = "load" if r["check"].startswith("load:") else r["check"]
        idx.setdefault((r["cfg"], r["kind"], r["ot"], col), []).append(r["status"])

    def cell(k):
        st = idx.get(k)
        if not st:
            return "-"
        return "FAIL" if "FAIL" in st else ("PASS" if "PASS" in st else "info")
    print(f"\n{'config':14} {'file':10} {'outtype':7} " + " ".join(f"{c:9}" for c in cols))
    for cfg, _, _ in pairs:
        for kind in KINDS:
            for ot in ots:
                print(f"{cfg:14} {kind:10} {ot:7} " + " ".join(f"{cell((cfg, kind, ot, c)):9}" for c in cols))
    for r in RESULTS:
        if r["check"] in ("tensors", "order", "bytes", "metadata", "kquant-bytes") or r["check"].startswith("load:"):
            continue
        print(f"{r['cfg']:14} {r['kind']:10} {r['ot']:7} {r['check']}: {r['status']}")
    if SHARED_WARNINGS:
        print("\nllama.cpp warnings printed for its own files as well as for ours (not counted):")
        for w, names in sorted(SHARED_WARNINGS.items()):
            print(f"  [{','.join(sorted(names))}] {w}")
    fails = [r for r in RESULTS if r["status"] == "FAIL"]
    print(f"\nDetails ({len(fails)} FAIL):")
    for r in RESULTS:
        if r["status"] != "PASS" or r["check"].startswith("load:") or r["check"] == "tensors":
            print(f"  [{r['status']}] {r['cfg']} {r['kind']} {r['ot']} {r['check']}: {r['detail']}")
    print("\nWall times:")
    for k, v in times.items():
        print(f"  {k:36} {v:7.1f} s")
    print(f"\nlogs: {work / 'logs'}; commands: {work / 'commands.txt'}")
    print("RESULT:", "FAIL" if fails else "PASS")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())

"""`unigemma bench kernels`: machine limits first, then GEMV / GEMM on the Gemma 4 12B shapes.

1. Read bandwidth, STREAM-style (C++: every thread sums its slice of a buffer much larger than
   the last-level cache with 8 independent vector accumulators; best of N passes), and the
   peak float32 FMA rate (independent FMA chains in registers), for each thread count.
2. GEMV (1 token, decoding) and GEMM (512 tokens, prefill; 64 with --quick) through
   `_core.matmul`'s C++ driver, timed in C++ (`_core.bench_matmul`) for every weight type,
   shape, ISA path and thread count. Weights are distinct random blocks (make_weights). A
   GEMV rotates over enough distinct copies of the matrix to exceed 8x the last-level cache
   (and 256 MiB), so it streams weights from memory as inside a model.

Reported per run: GB/s of weights streamed (weight bytes / seconds), % of the read bandwidth
(a GEMV: the mean of two 256 MiB probes, each the median of 5 passes, taken right before
and right after it, because the
bandwidth of a shared host drifts by tens of percent within minutes; a GEMM: the probe of
step 1), GFLOP/s (2 * rows * cols * tokens / seconds) and % of the
measured float32 FMA peak (same thread count; int8 dot-product paths can exceed it).
`--json` prints one object:
  {"read_bandwidth_gbs": ..., "peak_gflops": ..., "results": [{"op": "gemv"|"gemm", "type": "q4_0",
   "rows": R, "cols": C, "tokens": T, "isa": "avx2", "threads": N, "seconds": ..., "gbs": ...,
   "gflops": ..., "read_bandwidth_gbs": ... (GEMV only: its local probe)}, ...]}
with the top-level bandwidth and peak measured with the largest thread count of the run.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path


# (label, rows = output features, cols = input features): Gemma 4 12B text model
SHAPES = [
    ("attn_q 3840->4096", 4096, 3840),
    ("attn_k/v 3840->2048", 2048, 3840),
    ("attn_q(global) 3840->8192", 8192, 3840),
    ("attn_out 4096->3840", 3840, 4096),
    ("attn_out(global) 8192->3840", 3840, 8192),
    ("ffn_gate/up 3840->15360", 15360, 3840),
    ("ffn_down 15360->3840", 3840, 15360),
    ("output head 3840->262144", 262144, 3840),
]
QUICK_SHAPES = [SHAPES[0], SHAPES[5], SHAPES[6]]
TYPES = ["q4_0", "q4_k", "q6_k", "q8_0", "bf16"]
GEMM_TOKENS, QUICK_GEMM_TOKENS = 512, 64
BW_BYTES, QUICK_BW_BYTES = 1 << 30, 256 << 20
LOCAL_BW_BYTES = 256 << 20  # the probe taken around each GEMV (its %bw reference)
MIN_STREAM_BYTES = 256 << 20  # a GEMV rotates over >= max(this, 8 x LLC) bytes of weight copies


class _BenchCommands(argparse._SubParsersAction):
    """`bench`'s sub-commands, where a first argument that names none of them is the model
    file of `bench model`: `unigemma bench MODEL ...` = `unigemma bench model MODEL ...`."""

    class _AnyName(dict):
        """The choices argparse checks before calling the action: any name passes; iterating
        gives the real sub-commands."""

        def __init__(self, names: dict):
            super().__init__()
            self.names = names

        def __contains__(self, name):
            return True

        def __iter__(self):
            return iter(self.names)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.choices = self._AnyName(self._name_parser_map)

    def __call__(self, parser, namespace, values, option_string=None):
        if values and values[0] not in self._name_parser_map:
            values = ["model", *values]
        super().__call__(parser, namespace, values, option_string)


def add_bench_parser(subparsers) -> None:
    """Registers `bench` on the CLI's subparsers: `bench MODEL` (alias `bench model MODEL`),
    `bench kernels`, `bench media`."""
    b = subparsers.add_parser(
        "bench", help="benchmarks: bench MODEL (prefill/decode), bench kernels, bench media",
        usage="%(prog)s MODEL [-p N] [-n N] [-t N] [-r N] [--ctx N] [--depth D] [--kv T | --kv-k T --kv-v T] "
              "[--precision q8|q16] [--bw GBS] [--json]\n       %(prog)s {kernels,media,model} ...",
        description="`bench MODEL ...` (or `bench model MODEL ...`): prefill / decode speed, time to first token, "
                    "memory and decode bandwidth use of a GGUF text model (see `bench model -h`).")
    bsub = b.add_subparsers(dest="bench_cmd", required=True, action=_BenchCommands, prog=b.prog,
                            metavar="{MODEL,kernels,media,model}")
    k = bsub.add_parser("kernels", help="read bandwidth, FMA peak, GEMV/GEMM on the 12B shapes",
                        description=__doc__.split("\n\n")[0])
    k.add_argument("--json", action="store_true", help="print one JSON object")
    k.add_argument("--threads", type=int, default=None, metavar="N",
                   help="thread count (0 = all hardware threads; default: 1 and all)")
    k.add_argument("--isa", default=None, metavar="X",
                   help="ISA path(s), comma-separated, or 'all' (default: every vector path; scalar only if asked)")
    k.add_argument("--quick", action="store_true",
                   help=f"3 shapes, GEMM with {QUICK_GEMM_TOKENS} tokens, all threads, selected ISA, short timings")
    k.add_argument("--types", default=None, metavar="T,..", help=f"weight types (default: {','.join(TYPES)})")
    k.add_argument("--ops", default="gemv,gemm", metavar="OPS", help="gemv, gemm or both (default)")
    k.add_argument("--tokens", type=int, default=None, metavar="T", help="GEMM tokens (default 512; 64 with --quick)")
    k.add_argument("--markdown", default=None, metavar="FILE", help="also write the results as a Markdown table")
    k.set_defaults(fn=run_bench_kernels)
    from .bench_model import add_parser as add_model_parser

    add_model_parser(bsub, "model", "prefill / decode tok/s, TTFT, memory, bandwidth use of a GGUF model "
                     "(also: bench MODEL)")
    from .bench_media import add_parser as add_media_parser

    add_media_parser(bsub)


def _llc_bytes() -> int:
    best = 0
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            s = (d / "size").read_text().strip()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
            best = max(best, int(s.rstrip("KMG")) * mult)
        except (OSError, ValueError):
            pass
    return best or (32 << 20)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


# Byte offsets of the fp16 scale fields inside one block (GGML layouts); every other byte
# of a quantized block is valid whatever its value.
_F16_FIELDS = {"q4_0": (0,), "q4_1": (0, 2), "q5_0": (0,), "q5_1": (0, 2), "q8_0": (0,), "q2_k": (80, 82),
               "q3_k": (108,), "q4_k": (0, 2), "q5_k": (0, 2), "q6_k": (208,), "iq4_nl": (0,)}


def make_weights(core, wtype: str, rows: int, cols: int, copies: int = 1, seed: int = 0) -> np.ndarray:
    """Raw blocks of `copies` rows x cols matrices, all distinct random data (valid blocks:
    random quants, fp16 scales in [2^-12, 2^-7), float weights of magnitude ~1), so that no
    cache or page sharing can stand in for streaming the weights from memory."""
    import numpy as np

    import gguf

    qtype = gguf.GGMLQuantizationType[wtype.upper()]
    block_elems, block = gguf.GGML_QUANT_SIZES[qtype]
    if cols % block_elems:
        raise ValueError(f"[bench] cols {cols} is not a multiple of the {wtype} block size {block_elems}")
    rng = np.random.default_rng(seed)
    nbytes = cols // block_elems * block * rows * copies
    raw = rng.integers(0, np.iinfo(np.uint64).max, size=-(-nbytes // 8), dtype=np.uint64, endpoint=True)
    u8 = raw.view(np.uint8)[:nbytes]
    u16 = raw.view(np.uint16)[: nbytes // 2]
    if wtype == "f32":
        u32 = raw.view(np.uint32)[: nbytes // 4]
        u32 &= np.uint32(0x807FFFFF)
        u32 |= (np.uint32(126) + (u32 & np.uint32(3))) << np.uint32(23)  # |x| in [0.5, 4)
    elif wtype == "bf16":
        u16 &= np.uint16(0x807F)
        u16 |= (np.uint16(126) + (u16 & np.uint16(3))) << np.uint16(7)
    elif wtype == "f16":
        u16 &= np.uint16(0x83FF)
        u16 |= (np.uint16(14) + (u16 & np.uint16(3))) << np.uint16(10)
    else:
        fields = _F16_FIELDS.get(wtype)
        if fields is None:
            raise ValueError(f"[bench] no random-block layout for {wtype}")
        blocks = u8.reshape(-1, block)
        for off in fields:
            f16 = blocks[:, off:off + 2].copy().view(np.uint16)  # one scale per block
            f16 &= np.uint16(0x03FF)
            f16 |= (np.uint16(3) + (f16 & np.uint16(7)) % np.uint16(5)) << np.uint16(10)
            blocks[:, off:off + 2] = f16.view(np.uint8)
    return u8


def _local_bandwidth(core, n: int) -> float:
    """Median of 5 single passes of the read probe over LOCAL_BW_BYTES (a median, not the
    best: on a shared host single passes sometimes read far above the sustained rate)."""
    import statistics

    return statistics.median(core.bench_read_bandwidth(LOCAL_BW_BYTES, n, 1) for _ in range(5))


def _resolve_isas(core, arg: str | None, quick: bool) -> list[str]:
    import numpy as np

    info = core.build_info()
    avail = list(info["available_isas"])
    if arg is None:
        if quick:
            return [info["selected_isa"]]
        vec = [a for a in avail if a != "scalar"]
        return vec or ["scalar"]
    if arg == "all":
        return avail
    out = [a.strip() for a in arg.split(",") if a.strip()]
    for a in out:
        core.matmul(np.zeros(18, np.uint8), "q4_0", 1, 32, np.zeros((1, 32), np.float32), isa=a)  # validates
    return out


HEADER = (f"{'op':4} {'type':5} {'rows':>6} {'cols':>6} {'T':>4} {'isa':7} {'thr':>3} {'ms':>10} "
          f"{'GB/s':>7} {'%bw':>6} {'GFLOP/s':>8} {'%peak':>6}")


def _row(r: dict, machine: dict) -> str:
    m = machine[r["threads"]]
    return (f"{r['op']:4} {r['type']:5} {r['rows']:>6} {r['cols']:>6} {r['tokens']:>4} {r['isa']:7} "
            f"{r['threads']:>3} {r['seconds'] * 1e3:>10.3f} {r['gbs']:>7.1f} "
            f"{100 * r['gbs'] / r.get('read_bandwidth_gbs', m['read_bandwidth_gbs']):>6.1f} {r['gflops']:>8.1f} "
            f"{100 * r['gflops'] / m['peak_gflops']:>6.1f}")


def run(threads: int | None = None, isa: str | None = None, quick: bool = False, types=None, ops=("gemv", "gemm"),
        tokens: int | None = None, log=None) -> dict:
    """Runs the benchmark; returns the JSON-able result (plus per-thread machine numbers under
    the private key "_machine"). `log(line)` receives progress lines."""
    import numpy as np

    from . import _core as core

    log = log or (lambda s: None)
    hw = core.build_info()["hardware_threads"] or 1
    thread_list = [threads] if threads else sorted({1, hw})
    if threads is None and quick:
        thread_list = [hw]
    isas = _resolve_isas(core, isa, quick)
    types = list(types or TYPES)
    shapes = QUICK_SHAPES if quick else SHAPES
    gemm_tokens = tokens or (QUICK_GEMM_TOKENS if quick else GEMM_TOKENS)
    min_seconds = 0.15 if quick else 0.5
    llc = _llc_bytes()
    stream_target = max(8 * llc, MIN_STREAM_BYTES)

    machine = {}
    for n in thread_list:
        bw = core.bench_read_bandwidth(QUICK_BW_BYTES if quick else BW_BYTES, n, 3 if quick else 8)
        peak = core.bench_peak_gflops(n, None, 3 if quick else 5)
        machine[n] = {"read_bandwidth_gbs": bw, "peak_gflops": peak}
        log(f"  {n} thread(s): read bandwidth {bw:.1f} GB/s, float32 FMA peak {peak:.0f} GFLOP/s")
    log("")
    log(HEADER)
    log("-" * len(HEADER))

    results = []
    rng = np.random.default_rng(1)
    for wtype in types:
        for label, rows, cols in shapes:
            mat_bytes = len(make_weights(core, wtype, 1, cols)) * rows
            for op in ops:
                if op == "gemv":
                    copies = max(1, math.ceil(stream_target / mat_bytes))
                    t = 1
                else:
                    copies, t = 1, gemm_tokens
                w = make_weights(core, wtype, rows, cols, copies)
                x = rng.standard_normal((t, cols), dtype=np.float32)
                flops = 2.0 * rows * cols * t
                for a in isas:
                    for n in thread_list:
                        # long GEMMs (the 262144-row head): one timed call, no warm-up
                        est = flops / max(1e9, 0.25e9 * machine[n]["peak_gflops"]) if a != "scalar" else flops / 2e9
                        long_run = est > 2.0
                        if op == "gemv":  # bandwidth right before and after: shared hosts drift
                            bw0 = _local_bandwidth(core, n)
                        sec = core.bench_matmul(w, wtype, rows, cols, copies, x, n, a,
                                                0.0 if long_run else min_seconds, 1 if long_run else 3, not long_run)
                        r = {"op": op, "type": wtype, "rows": rows, "cols": cols, "tokens": t, "isa": a, "threads": n,
                             "seconds": sec, "gbs": mat_bytes / sec / 1e9, "gflops": flops / sec / 1e9}
                        if op == "gemv":
                            r["read_bandwidth_gbs"] = 0.5 * (bw0 + _local_bandwidth(core, n))
                        results.append(r)
                        log(_row(r, machine))
                del w, x
    top = machine[max(thread_list)]
    return {"read_bandwidth_gbs": top["read_bandwidth_gbs"], "peak_gflops": top["peak_gflops"], "results": results,
            "_machine": machine}


def format_markdown(res: dict) -> str:
    """The results as a Markdown table (for BENCHMARKS.md)."""
    machine = res["_machine"]
    lines = [f"CPU: {_cpu_name()}", ""]
    for n, m in sorted(machine.items()):
        lines.append(f"- {n} thread(s): read bandwidth {m['read_bandwidth_gbs']:.1f} GB/s, "
                     f"float32 FMA peak {m['peak_gflops']:.0f} GFLOP/s")
    lines += ["", "| op | type | rows | cols | tokens | isa | threads | ms | GB/s | % bw | GFLOP/s | % peak |",
              "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["results"]:
        m = machine[r["threads"]]
        lines.append(f"| {r['op']} | {r['type']} | {r['rows']} | {r['cols']} | {r['tokens']} | {r['isa']} | "
                     f"{r['threads']} | {r['seconds'] * 1e3:.3f} | {r['gbs']:.1f} | "
                     f"{100 * r['gbs'] / r.get('read_bandwidth_gbs', m['read_bandwidth_gbs']):.1f} | {r['gflops']:.1f} | "
                     f"{100 * r['gflops'] / m['peak_gflops']:.1f} |")
    return "\n".join(lines)


def run_bench_kernels(args) -> int:
    ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
    bad = [o for o in ops if o not in ("gemv", "gemm")]
    if bad or not ops:
        print(f"unigemma: error: --ops takes gemv and/or gemm, got {args.ops!r}", file=sys.stderr)
        return 2
    types = [t.strip().lower() for t in args.types.split(",")] if args.types else None
    if args.tokens is not None and args.tokens < 2:
        print("unigemma: error: --tokens must be >= 2", file=sys.stderr)
        return 2
    if args.json:  # progress to stderr, the one JSON object to stdout
        def log(line):
            print(line, file=sys.stderr, flush=True)
    else:
        def log(line):
            print(line, flush=True)
        from . import _core

        log(f"CPU: {_cpu_name()}, {_core.build_info()['hardware_threads']} hardware threads")
    t0 = time.perf_counter()
    threads = args.threads
    if threads == 0:
        from . import _core

        threads = _core.build_info()["hardware_threads"] or 1
    res = run(threads=threads, isa=args.isa, quick=args.quick, types=types, ops=ops, tokens=args.tokens, log=log)
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if not k.startswith("_")}, indent=1))
    else:
        print(f"\n({time.perf_counter() - t0:.0f} s)")
    if args.markdown:
        Path(args.markdown).write_text(format_markdown(res) + "\n")
    return 0


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="unigemma")
    add_bench_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())

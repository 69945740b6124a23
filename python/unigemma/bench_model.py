"""`unigemma bench MODEL`: prefill and decode speed of a text model on the CPU, with time to
first token, memory and decode bandwidth use (`unigemma bench model MODEL` is an alias).

One context for the whole run (n_ctx = depth + p + n unless --ctx). Per repetition, as
llama-bench does for `-p P -n N -d D`:
  1. the context holds D random tokens (--depth; prefilled untimed, once, and restored by
     truncation when possible, else prefilled again),
  2. prefill: P random token ids in one eval call, timed (= time to first token: from the
     start of the prompt's eval to the first token's logits),
  3. the context is cut back to D tokens and N decode steps of one random token each are
     timed (so decode runs at context D..D+N-1, like llama-bench's tg at depth D; with D = 0
     from an empty cache); with --decode-after-prompt the context is kept and decoding runs
     at D+P..D+P+N-1 (one long prompt measures both prefill and decode at that context).
One untimed warm-up repetition comes first (it pages the weights in; --warmup-tokens W makes it
a W-token prompt and <= 4 decode steps, for long prompts); -r repetitions follow,
reported as the median, every run and the spread.

--reserve-kv allocates (and touches) the cache of the whole --ctx before the first eval, as
llama.cpp does at context creation, so peak RSS shows a full context's memory; by default the
full-attention layers' caches grow as the context fills.

Also reported: model open time (load_s), cold time to first token (open + the warm-up's
depth and prompt prefill: what a fresh process waits), peak RSS of this process (VmHWM
on Linux, else getrusage's ru_maxrss) and RSS right after opening the model, KV bytes
allocated / at n_ctx / read per decoded token, weight bytes read per decoded token, and the
decode bandwidth use:
  decode_bw_gbs = (weight bytes + KV bytes read per token) * decode tok/s,
  decode_bw_fraction = decode_bw_gbs / read_bw_gbs,
where read_bw_gbs is --bw, or else measured once with the STREAM-style probe of `bench
kernels` (1 GiB buffer, same thread count, best of 5 passes) in a child process, so that its
buffer does not count in this process's peak RSS.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

KV_TYPES = ("f32", "f16", "q8_0", "q4_0")
BW_PROBE_BYTES = 1 << 30
BW_PROBE_REPS = 5


def add_parser(bsub, name: str = "model", help_text: str | None = None) -> None:
    """The bench-model options on a `bench` sub-parser `name` (`model`, and the parser that
    takes `bench MODEL` without a sub-command)."""
    m = bsub.add_parser(name, help=help_text or "prefill / decode tok/s, TTFT, memory, bandwidth use of a GGUF model",
                        description=__doc__.split("\n\n")[0])
    add_arguments(m)


def add_arguments(m) -> None:
    m.add_argument("model", help="GGUF file (gemma4 or gemma3)")
    m.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens, timed prefill (default 512)")
    m.add_argument("-n", "--n-gen", type=int, default=128, help="decoded tokens (default 128; 0 = prefill only)")
    m.add_argument("-t", "--threads", type=int, default=0, help="threads (0 = all)")
    m.add_argument("-r", "--reps", type=int, default=3, help="timed repetitions after one warm-up (default 3)")
    m.add_argument("--ctx", type=int, default=None, metavar="N", help="context size (default depth + p + n)")
    m.add_argument("--depth", type=int, default=0, metavar="D",
                   help="tokens already in the context (prefilled untimed) when prefill and decode are timed")
    m.add_argument("--kv", default=None, choices=KV_TYPES, help="KV cache type of K and V (default f16)")
    m.add_argument("--kv-k", default=None, choices=KV_TYPES, help="K cache type (default f16; not with --kv)")
    m.add_argument("--kv-v", default=None, choices=KV_TYPES, help="V cache type (default f16; not with --kv)")
    m.add_argument("--decode-after-prompt", action="store_true",
                   help="decode right after the timed prompt (at context depth + p) instead of at depth D: "
                        "one long prompt then measures both prefill and decode at that context")
    m.add_argument("--warmup-tokens", type=int, default=None, metavar="W",
                   help="warm-up repetition with a W-token prompt and <= 4 decode steps (default: full size)")
    m.add_argument("--reserve-kv", action="store_true",
                   help="allocate and touch the KV cache of the whole --ctx up front (as llama.cpp does), so "
                        "peak RSS shows a full context's memory")
    m.add_argument("--precision", default="q8", choices=("q8", "q16"), help="activation precision (default q8)")
    m.add_argument("--device", default="cpu", choices=("auto", "cpu", "gpu"),
                   help="where the forward runs (default cpu; gpu: the WebGPU adapter, a software one too)")
    m.add_argument("--bw", type=float, default=None, metavar="GBS",
                   help="machine read bandwidth in GB/s for the bandwidth use (default: measure it)")
    m.add_argument("--json", action="store_true", help="print one JSON object (progress goes to stderr)")
    m.set_defaults(fn=run_cli)


# ----------------------------------------------------------------------------- model facts

def _row_bytes(type_name: str, n: int) -> int:
    """Bytes of one row of n elements stored in a KV cache type."""
    import gguf

    be, bb = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name.upper()]]
    return n // be * bb


def kv_read_bytes(layers: list[dict], window: int, pos: int, k_type: str, v_type: str) -> int:
    """Bytes of K and V the attention of all layers reads to decode the token at position
    `pos` (0-based): every layer (a KV-shared layer reads its source layer's cache) reads
    the rows of the positions it sees, min(pos + 1, window) on a sliding layer, pos + 1 on a
    full one; one K and one V row per KV head and position."""
    total = 0
    for s in layers:
        seen = min(pos + 1, window) if s["sliding"] else pos + 1
        total += seen * s["n_kv_head"] * (_row_bytes(k_type, s["head_dim"]) + _row_bytes(v_type, s["head_dim"]))
    return total


def weight_read_bytes(gf) -> int:
    """Weight bytes one decode step reads: every tensor once, except embedding tables looked
    up by row (an untied token_embd next to output.weight, per_layer_token_embd), which count
    for one row."""
    tensors = {t.name: t for t in gf.tensors}
    total = sum(t.n_bytes for t in tensors.values())
    lookup = ["per_layer_token_embd.weight"] + (["token_embd.weight"] if "output.weight" in tensors else [])
    for name in lookup:
        t = tensors.get(name)
        if t is not None:
            rows = max(1, t.n_elements // max(1, t.ne[0]))
            total -= t.n_bytes - t.n_bytes // rows
    return total


# ----------------------------------------------------------------------------- process facts

def ru_maxrss_bytes() -> int:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def peak_rss_bytes() -> int:
    """Peak resident set of this process: Linux's VmHWM (the high-water mark of this
    process's own memory map), else getrusage's ru_maxrss. On Linux ru_maxrss carries over
    exec: a process started from a large parent (vfork + exec, as Python's subprocess does)
    reports at least the parent's peak, so it is only the fallback."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return ru_maxrss_bytes()


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return ru_maxrss_bytes()


def _git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        r = subprocess.run(["git", "-C", here, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                           timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def measure_read_bandwidth(threads: int) -> float:
    """The read-bandwidth probe in a child process (its 1 GiB buffer stays out of our RSS)."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [pkg_parent, env.get("PYTHONPATH", "")] if p)
    code = (f"from unigemma import _core; "
            f"print(_core.bench_read_bandwidth({BW_PROBE_BYTES}, {threads}, {BW_PROBE_REPS}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise ValueError(f"[bench] the read-bandwidth probe failed: {r.stderr.strip()[-300:]}")
    return float(r.stdout.strip().splitlines()[-1])


def _spread(v: list[float]) -> float:
    """Relative half-range (max - min) / 2 / median; 0 for one value."""
    return (max(v) - min(v)) / 2 / statistics.median(v) if len(v) > 1 else 0.0


# ----------------------------------------------------------------------------- the benchmark

def run(path: str, n_prompt: int = 512, n_gen: int = 128, threads: int = 0, reps: int = 3, kv: str | None = None,
        precision: str = "q8", *, kv_k: str | None = None, kv_v: str | None = None, n_ctx: int | None = None,
        depth: int = 0, bw_gbs: float | None = None, log=None, decode_after_prompt: bool = False,
        warmup_tokens: int | None = None, reserve_kv: bool = False, device: str = "cpu") -> dict:
    """Runs the benchmark (see the module docstring); returns the JSON-able result."""
    import numpy as np

    from . import __version__
    from . import _core as core

    if kv is not None and (kv_k is not None or kv_v is not None):
        raise ValueError("[bench] give --kv, or --kv-k and --kv-v, not both")
    k_type = kv_k or kv or "f16"
    v_type = kv_v or kv or "f16"
    for what, t in (("K", k_type), ("V", v_type)):
        if t not in KV_TYPES:
            raise ValueError(f"[bench] unknown {what} cache type {t!r} (expected one of {', '.join(KV_TYPES)})")
    if n_prompt < 1 or n_gen < 0 or reps < 1 or depth < 0 or threads < 0:
        raise ValueError("[bench] need -p >= 1, -n >= 0, -r >= 1, --depth >= 0, -t >= 0")
    if warmup_tokens is not None and warmup_tokens < 1:
        raise ValueError("[bench] --warmup-tokens must be >= 1")
    if bw_gbs is not None and not bw_gbs > 0:
        raise ValueError("[bench] --bw must be > 0 (GB/s)")
    need = depth + max(n_prompt, n_gen)
    if n_ctx is None:
        n_ctx = depth + n_prompt + n_gen
    elif n_ctx < need:
        raise ValueError(f"[bench] --ctx {n_ctx} is too small: depth + max(p, n) = {need} tokens")
    if not os.path.isfile(path):
        raise ValueError(f"[bench] no such model file: {path}")
    log = log or (lambda s: None)
    n_threads = threads or core.get_threads()

    bw_measured = bw_gbs is None
    if bw_measured:
        log(f"measuring the read bandwidth ({BW_PROBE_BYTES >> 20} MiB buffer, {n_threads} threads, "
            f"best of {BW_PROBE_REPS}; --bw GBS skips this) ...")
        bw_gbs = measure_read_bandwidth(n_threads)

    from .webgpu import resolve

    backend, why_not = resolve(device)
    if why_not:
        log(f"device: cpu ({why_not})")
    t_open = time.perf_counter()
    model = core.TextModel(path)
    load_s = time.perf_counter() - t_open
    rss_after_load = current_rss_bytes()
    hp = model.hparams
    ctx = core.Context(model, n_ctx=n_ctx, n_threads=threads, k_type=k_type, v_type=v_type,
                       act_precision=precision, backend=backend)
    if reserve_kv:
        ctx.reserve_all()
    rng = np.random.default_rng(0)

    def ids(n):
        return rng.integers(1000, model.n_vocab - 1000, size=n).astype(np.int32)

    depth_ids = ids(depth)

    def restore_depth():
        """The context back to the D depth tokens (truncation, or a fresh prefill)."""
        if ctx.n_past == depth or (ctx.n_past > depth and ctx.truncate(depth)):
            return
        ctx.reset()
        if depth:
            ctx.eval(depth_ids)

    pre_s, dec_s = [], []
    ttft_cold_s = None
    for r in range(reps + 1):
        restore_depth()
        short = r == 0 and warmup_tokens is not None  # a short warm-up for long prompts
        prompt = ids(min(n_prompt, warmup_tokens) if short else n_prompt)
        t0 = time.perf_counter()
        ctx.eval(prompt)
        t1 = time.perf_counter()
        if r == 0:
            ttft_cold_s = t1 - t_open  # open + context + depth + prompt, first run of the process
        if n_gen:
            if not decode_after_prompt:
                restore_depth()
            gen = ids(min(n_gen, 4) if short else n_gen)
            t2 = time.perf_counter()
            for i in range(len(gen)):
                ctx.eval(gen[i:i + 1])
            t3 = time.perf_counter()
        if r == 0:
            continue  # warm-up: pages in the weights, grows the pool and the cache
        pre_s.append(t1 - t0)
        if n_gen:
            dec_s.append(t3 - t2)
        log(f"  rep {r}: prefill {n_prompt / pre_s[-1]:.2f} tok/s" +
            (f", decode {n_gen / dec_s[-1]:.2f} tok/s" if n_gen else ""))

    pre = [n_prompt / s for s in pre_s]
    dec = [n_gen / s for s in dec_s]
    weights_read = weight_read_bytes(model.gguf)
    d0 = depth + n_prompt if decode_after_prompt else depth  # first decoded position
    kv_read = (sum(kv_read_bytes(hp["layers"], hp["sliding_window"], p, k_type, v_type)
                   for p in range(d0, d0 + n_gen)) / n_gen) if n_gen else None
    out = {
        "model": path, "arch": hp["arch"], "n_layer": hp["n_layer"], "file_bytes": os.path.getsize(path),
        "n_prompt": n_prompt, "n_gen": n_gen, "depth": depth, "decode_after_prompt": decode_after_prompt,
        "decode_context": d0, "n_ctx": n_ctx, "reserve_kv": reserve_kv, "threads": n_threads, "reps": reps,
        "kv_type_k": k_type, "kv_type_v": v_type, "act_precision": precision, "backend": backend,
        "prefill_tps": statistics.median(pre), "prefill_tps_all": pre, "prefill_tps_spread": _spread(pre),
        "decode_tps": statistics.median(dec) if dec else None, "decode_tps_all": dec,
        "decode_tps_spread": _spread(dec) if dec else None,
        "ttft_s": statistics.median(pre_s), "ttft_s_all": pre_s, "load_s": load_s, "ttft_cold_s": ttft_cold_s,
        "peak_rss_bytes": peak_rss_bytes(), "ru_maxrss_bytes": ru_maxrss_bytes(),
        "rss_after_load_bytes": rss_after_load,
        "kv_bytes": ctx.kv_bytes, "kv_bytes_at_n_ctx": model.kv_cache_bytes(n_ctx, 512, k_type, v_type),
        "kv_bytes_read_per_token": kv_read,
        "weight_bytes": model.weight_bytes, "weight_bytes_read_per_token": weights_read,
        "read_bw_gbs": bw_gbs, "read_bw_source": ("measured" if bw_measured else "--bw"),
        "decode_bw_gbs": None, "decode_bw_fraction": None,
        "versions": {"unigemma": __version__, "git_commit": _git_commit(),
                     "isa": core.build_info()["selected_isa"]},
    }
    if backend == "webgpu":
        from .webgpu import open_device

        a = open_device()
        out["gpu_adapter"] = {k: a[k] for k in ("device", "adapter_type", "backend", "description")}
    if dec:
        out["decode_bw_gbs"] = (weights_read + kv_read) * out["decode_tps"] / 1e9
        out["decode_bw_fraction"] = out["decode_bw_gbs"] / bw_gbs
    return out


def _gib(b) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"


def format_human(res: dict) -> str:
    def runs(v, fmt):
        return ", ".join(fmt.format(x) for x in v)

    ver = res["versions"]
    lines = [
        f"model     {res['model']} ({res['arch']}, {res['n_layer']} layers, file {_gib(res['file_bytes'])})",
        (f"setup     {res['threads']} threads, n_ctx {res['n_ctx']}, depth {res['depth']}, "
         f"KV {res['kv_type_k']}/{res['kv_type_v']}, act {res['act_precision']}, "
         f"{res['reps']} reps after 1 warm-up"
         + (f", GPU {res['gpu_adapter']['device']} ({res['gpu_adapter']['adapter_type']})" if "gpu_adapter" in res
            else "")),
        (f"prefill   {res['n_prompt']} tokens: {res['prefill_tps']:.2f} tok/s median "
         f"(runs {runs(res['prefill_tps_all'], '{:.2f}')}; spread ±{100 * res['prefill_tps_spread']:.1f}%)"),
    ]
    if res["decode_tps"] is not None:
        lines.append(f"decode    {res['n_gen']} tokens at depth {res['depth']}: {res['decode_tps']:.2f} tok/s median "
                     f"(runs {runs(res['decode_tps_all'], '{:.2f}')}; spread ±{100 * res['decode_tps_spread']:.1f}%)")
    lines += [
        (f"TTFT      {res['ttft_s']:.3f} s (prefill of {res['n_prompt']} tokens); load {res['load_s']:.3f} s; "
         f"cold {res['ttft_cold_s']:.3f} s (load + first prefill)"),
        (f"memory    peak RSS {_gib(res['peak_rss_bytes'])} (after load {_gib(res['rss_after_load_bytes'])}); "
         f"KV {_gib(res['kv_bytes'])} allocated, {_gib(res['kv_bytes_at_n_ctx'])} at n_ctx; "
         f"weights {_gib(res['weight_bytes'])}"),
    ]
    src = ("measured: 1 GiB probe, same threads, best of 5" if res["read_bw_source"] == "measured" else "given with --bw")
    if res["decode_bw_gbs"] is not None:
        lines.append(f"bandwidth decode reads {_gib(res['weight_bytes_read_per_token'])} weights + "
                     f"{_gib(res['kv_bytes_read_per_token'])} KV per token = {res['decode_bw_gbs']:.1f} GB/s, "
                     f"{100 * res['decode_bw_fraction']:.0f}% of the read bandwidth {res['read_bw_gbs']:.1f} GB/s ({src})")
    lines.append(f"version   unigemma {ver['unigemma']}" + (f" (git {ver['git_commit']})" if ver["git_commit"] else "") +
                 f", ISA {ver['isa']}")
    return "\n".join(lines)


def run_cli(args) -> int:
    res = run(args.model, args.n_prompt, args.n_gen, args.threads, args.reps, args.kv, args.precision,
              kv_k=args.kv_k, kv_v=args.kv_v, n_ctx=args.ctx, depth=args.depth, bw_gbs=args.bw,
              log=lambda s: print(s, file=sys.stderr, flush=True), decode_after_prompt=args.decode_after_prompt,
              warmup_tokens=args.warmup_tokens, reserve_kv=args.reserve_kv, device=args.device)
    print(json.dumps(res) if args.json else format_human(res))
    return 0

"""Prefill / decode speed, time to first token and peak RSS of unigemma vs llama.cpp's
`llama-bench` on the same GGUF file, same threads, same K/V cache types, alternating runs.

    python tools/bench_vs_llamacpp.py MODEL.gguf [-p 512] [-n 128] [-t 2] [--rounds 3] [--depth D]
        [--kv-k f16 --kv-v f16] [--fa] [--ctx N] [--llama-bin DIR] [--json OUT] [--markdown]
        [--ours LABEL=PYTHONPATH ...]

Each round runs `llama-bench -m MODEL -p P -n N -d D -t T -r 1 -o json -ctk K -ctv V -fa on|off`
then `python -m unigemma bench MODEL -p P -n N --depth D -t T -r 1 --json --bw B ...`, each in
a child process whose peak RSS comes from os.wait4 (ru_maxrss of the child). The machine's
read bandwidth B is measured once up front (unigemma's 1 GiB probe) and handed to every run
of ours, so no probe runs inside the timed processes. Both sides do their own untimed warm-up.

Per metric the table gives every run, the medians and ours / llama.cpp:
  prefill tok/s, decode tok/s, decode bandwidth use (higher is better);
  time to first token, peak RSS (lower is better).
llama.cpp's time to first token is its prefill time, P / (its pp tok/s); ours is measured
the same way (prefill of the P-token prompt at depth D). The decode bandwidth use of both
sides counts the same bytes per token (ours: weights + K/V read at the decode context).
Flash attention: off unless --fa (llama.cpp needs it for a quantized V cache, so it is
turned on then, and said so). llama.cpp sizes its context itself (P + N + D); --ctx only
goes to ours. llama-bench: from --llama-bin DIR or $UNIGEMMA_LLAMA_CPP_BIN (a directory
holding llama-bench, e.g. llama_cpp_python's build/bin).

Several builds of ours (before / after a change) in the same alternating run:
`--ours LABEL=PYTHONPATH`, repeated, e.g.

    python tools/bench_vs_llamacpp.py M.gguf --ours before=OLD/python --ours after=NEW/python

Each round then runs llama.cpp and every build once (llama.cpp first; the builds' order
rotates by one each round, so no build always runs right after llama.cpp); each build's child
gets PYTHONPATH=PATH (ahead of the harness's own). The table gives per build its median, its
ratio to llama.cpp and, from the second build on, its ratio to the first build (the
before / after figure). Without --ours the build is the unigemma this harness imports
(labelled "ours", the table as before). The read bandwidth is then probed once with the first
build.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

KV_TYPES = ("f32", "f16", "q8_0", "q4_0")
BUILD_KEYS = ("build_commit", "build_number", "backends", "cpu_info", "gpu_info", "model_type", "n_threads",
              "type_k", "type_v", "flash_attn", "n_batch", "n_ubatch", "repack")
# (key, label, better): better = "higher" or "lower"
METRICS = (("prefill_tps", "prefill tok/s", "higher"), ("decode_tps", "decode tok/s", "higher"),
           ("ttft_s", "time to first token s", "lower"), ("peak_rss_bytes", "peak RSS MiB (child, wait4)", "lower"),
           ("decode_bw_fraction", "decode bandwidth use %", "higher"))


class BenchError(Exception):
    pass


def run_child(cmd: list[str], env=None, timeout: float | None = None) -> tuple[int, str, str, int, float]:
    """Runs cmd; returns (exit code, stdout, stderr, peak RSS bytes of the child, seconds).
    The RSS is ru_maxrss from os.wait4 (the child and any children it waited for)."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        killer = threading.Timer(timeout, p.kill) if timeout else None
        if killer:
            killer.start()
        try:
            out = p.stdout.read()
            p.stdout.close()
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            if killer:
                killer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        secs = time.perf_counter() - t0
        err.seek(0)
        rss = ru.ru_maxrss if sys.platform == "darwin" else ru.ru_maxrss * 1024
        return p.returncode, out, err.read(), int(rss), secs


def _tail(s: str, n: int = 6) -> str:
    return "\n".join(s.strip().splitlines()[-n:])


def llama_bench_cmd(a, exe: str, fa: bool) -> list[str]:
    cmd = [exe, "-m", a.model, "-p", str(a.n_prompt), "-n", str(a.n_gen), "-t", str(a.threads), "-r", "1",
           "-o", "json", "-ctk", a.kv_k, "-ctv", a.kv_v, "-fa", "on" if fa else "off"]
    if a.depth:
        cmd += ["-d", str(a.depth)]
    return cmd


def parse_llama_json(text: str, n_prompt: int, n_gen: int) -> dict:
    """llama-bench -o json: a list of tests; the pp test has n_gen 0, the tg test n_prompt 0."""
    try:
        tests = json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchError(f"llama-bench printed no JSON ({e}): {_tail(text)}") from None
    if not isinstance(tests, list) or not tests:
        raise BenchError("llama-bench printed no test results")
    pp = [t for t in tests if t.get("n_prompt") == n_prompt and t.get("n_gen") == 0]
    tg = [t for t in tests if t.get("n_gen") == n_gen and t.get("n_prompt") == 0]
    if not pp or (n_gen and not tg):
        raise BenchError(f"llama-bench results lack the pp{n_prompt}" + (f" / tg{n_gen}" if n_gen else "") + " test")

    def tps(t):
        s = t.get("samples_ts") or [t["avg_ts"]]
        return float(statistics.median(s))

    res = {"prefill_tps": tps(pp[0]), "decode_tps": tps(tg[0]) if n_gen else None,
           "build": {k: pp[0].get(k) for k in BUILD_KEYS if k in pp[0]}}
    res["ttft_s"] = n_prompt / res["prefill_tps"]
    return res


def ours_cmd(a, read_bw: float) -> list[str]:
    cmd = [sys.executable, "-m", "unigemma", "bench", a.model, "-p", str(a.n_prompt), "-n", str(a.n_gen),
           "-t", str(a.threads), "-r", "1", "--json", "--bw", repr(read_bw), "--kv-k", a.kv_k, "--kv-v", a.kv_v,
           "--depth", str(a.depth), "--precision", a.precision]
    if a.ctx:
        cmd += ["--ctx", str(a.ctx)]
    return cmd


def _ours_env() -> dict:
    import unigemma

    env = dict(os.environ)
    parent = str(Path(unigemma.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [parent, env.get("PYTHONPATH", "")] if p)
    return env


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _tool_git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short=12", "HEAD"],
                           capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def _fmt(key: str, v) -> str:
    if v is None:
        return "-"
    if key == "peak_rss_bytes":
        return f"{v / 2**20:.0f}"
    if key == "decode_bw_fraction":
        return f"{100 * v:.1f}"
    if key == "ttft_s":
        return f"{v:.3f}"
    return f"{v:.2f}"


def summarize(llama_runs: list[dict], ours_runs, labels: list[str] | None = None) -> list[dict]:
    """One row per metric: all runs, medians, ours / llama.cpp and which way is better.
    ours_runs: one build's runs (a list), or {label: runs} of several builds (first = the
    reference of the before / after ratios). The row's ours_* / ratio keys are the first
    build's; row["builds"] has every build: label, all, median, vs_llama, vs_first."""
    if isinstance(ours_runs, dict):
        per = ours_runs
        labels = labels or list(per)
    else:
        labels = labels or ["ours"]
        per = {labels[0]: ours_runs}
    rows = []
    for key, label, better in METRICS:
        lv = [r[key] for r in llama_runs if r.get(key) is not None]
        lm = statistics.median(lv) if lv else None
        builds = []
        for b in labels:
            ov = [r[key] for r in per[b] if r.get(key) is not None]
            om = statistics.median(ov) if ov else None
            builds.append({"label": b, "all": ov, "median": om,
                           "vs_llama": (om / lm) if (lm and om is not None) else None})
        first = builds[0]["median"]
        for bd in builds:
            bd["vs_first"] = (bd["median"] / first) if (first and bd["median"] is not None) else None
        rows.append({"metric": key, "label": label, "better": better, "llama_all": lv, "ours_all": builds[0]["all"],
                     "llama_median": lm, "ours_median": builds[0]["median"], "ratio": builds[0]["vs_llama"],
                     "builds": builds})
    return rows


def format_table(rows: list[dict], markdown: bool) -> str:
    def cell(key, median, values):
        return f"{_fmt(key, median)} ({', '.join(_fmt(key, x) for x in values)})"

    def ratio(x):
        return "-" if x is None else f"{x:.2f}"

    labels = [b["label"] for b in rows[0]["builds"]] if rows and rows[0].get("builds") else ["ours"]
    head = ["metric", "llama.cpp median (all runs)"]
    for i, b in enumerate(labels):
        head += [f"{b} median (all runs)", f"{b} / llama.cpp"] + ([f"{b} / {labels[0]}"] if i else [])
    head.append("better")
    body = []
    for r in rows:
        builds = r.get("builds") or [{"label": "ours", "all": r["ours_all"], "median": r["ours_median"],
                                      "vs_llama": r["ratio"], "vs_first": 1.0}]
        if r["llama_median"] is None and all(b["median"] is None for b in builds):
            continue
        line = [r["label"], cell(r["metric"], r["llama_median"], r["llama_all"])]
        for i, b in enumerate(builds):
            line += [cell(r["metric"], b["median"], b["all"]), ratio(b["vs_llama"])] + ([ratio(b["vs_first"])] if i else [])
        line.append(r["better"])
        body.append(line)
    last = len(head) - 1
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    w = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]

    def fmt(row):
        return "  ".join(c.ljust(w[i]) if i in (0, last) else c.rjust(w[i]) for i, c in enumerate(row)).rstrip()

    return "\n".join([fmt(head), "  ".join("-" * x for x in w)] + [fmt(b) for b in body])


def parse_ours(specs: list[str] | None) -> list[tuple[str, str]] | None:
    """--ours LABEL=PYTHONPATH values -> [(label, path)]; None when none given."""
    if not specs:
        return None
    out = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        label = label.strip()
        if not sep or not label or not path:
            raise ValueError(f"--ours wants LABEL=PYTHONPATH, got {spec!r}")
        if label in [x for x, _ in out]:
            raise ValueError(f"--ours label {label!r} given twice")
        if not (Path(path) / "unigemma" / "__init__.py").is_file():
            raise ValueError(f"--ours {label}: no unigemma package under {path}")
        out.append((label, str(Path(path).resolve())))
    return out


def build_env(path: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [path, env.get("PYTHONPATH", "")] if p)
    return env


def build_identity(env: dict) -> dict:
    """The package a child with env imports: its directory and the sha256 of its _core module
    (which binary was timed, also for builds outside a git checkout)."""
    code = ("import json, unigemma, unigemma._core as c; "
            "print(json.dumps({'package': __import__('os').path.dirname(unigemma.__file__), 'core': c.__file__}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        raise BenchError(f"cannot import unigemma with PYTHONPATH={env.get('PYTHONPATH')}: {_tail(r.stderr)}")
    ident = json.loads(r.stdout.strip().splitlines()[-1])
    h = hashlib.sha256()
    with open(ident["core"], "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    ident["core_sha256"] = h.hexdigest()[:16]
    return ident


def probe_bandwidth(env: dict, threads: int) -> float:
    code = f"from unigemma.bench_model import measure_read_bandwidth as m; print(repr(m({threads})))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise BenchError(f"bandwidth probe failed: {_tail(r.stderr)}")
    return float(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="GGUF file")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (llama.cpp, ours) (default 3)")
    ap.add_argument("--ctx", type=int, default=None, help="our context size (llama-bench picks its own)")
    ap.add_argument("--kv-k", default="f16", choices=KV_TYPES)
    ap.add_argument("--kv-v", default="f16", choices=KV_TYPES)
    ap.add_argument("--depth", type=int, default=0, help="tokens in the context before the timed prefill / decode")
    ap.add_argument("--fa", action="store_true", help="llama.cpp flash attention on (default off)")
    ap.add_argument("--precision", default="q8", choices=("q8", "q16"), help="our activation precision")
    ap.add_argument("--bw", type=float, default=None, metavar="GBS", help="read bandwidth (default: measure once)")
    ap.add_argument("--llama-bin", default=os.environ.get("UNIGEMMA_LLAMA_CPP_BIN"), metavar="DIR",
                    help="directory with llama-bench (default $UNIGEMMA_LLAMA_CPP_BIN)")
    ap.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="write all results to OUT")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per child run (default 1800)")
    ap.add_argument("--ours", action="append", default=None, metavar="LABEL=PYTHONPATH",
                    help="a unigemma build to time (repeat for several: the first is the before / after "
                         "reference); default: the unigemma this harness imports, as 'ours'")
    a = ap.parse_args(argv)
    try:
        a.builds = parse_ours(a.ours)
    except ValueError as e:
        ap.error(str(e))
    if a.n_prompt < 1 or a.n_gen < 0 or a.threads < 1 or a.rounds < 1 or a.depth < 0:
        ap.error("need -p >= 1, -n >= 0, -t >= 1, --rounds >= 1, --depth >= 0")
    if a.bw is not None and not a.bw > 0:
        ap.error("--bw must be > 0")
    if not a.llama_bin:
        ap.error("no llama.cpp binaries: pass --llama-bin DIR or set UNIGEMMA_LLAMA_CPP_BIN")
    exe = Path(a.llama_bin) / "llama-bench"
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        ap.error(f"no executable llama-bench in {a.llama_bin}")
    if not Path(a.model).is_file():
        ap.error(f"no such model file: {a.model}")
    try:
        return _run(a, str(exe))
    except BenchError as e:
        print(f"bench_vs_llamacpp: error: {e}", file=sys.stderr)
        return 1


def _run(a, exe: str) -> int:
    fa = a.fa
    notes = ["llama.cpp time to first token = its prefill time, p / (pp tok/s)",
             ("peak RSS: ru_maxrss of each child process (os.wait4); on Linux it is at least this harness's own "
              "RSS when it started the child (ru_maxrss carries over exec), the same floor for both sides"),
             "ours also reports its own peak (VmHWM) in --json as self_peak_rss_bytes"]
    if a.kv_v not in ("f16", "f32") and not fa:
        fa = True
        notes.append(f"flash attention turned on for llama.cpp: its quantized V cache ({a.kv_v}) needs it")

    def log(line):
        print(line, file=sys.stderr, flush=True)

    if a.builds is None:
        envs = {"ours": _ours_env()}
        paths = {"ours": None}
    else:
        envs = {label: build_env(path) for label, path in a.builds}
        paths = dict(a.builds)
    labels = list(envs)
    multi = a.builds is not None and len(labels) > 1
    idents = {b: build_identity(envs[b]) for b in labels}
    for b in labels:
        log(f"build {b}: {idents[b]['package']} (_core sha256 {idents[b]['core_sha256']})")
    if a.bw is None:
        log(f"measuring the read bandwidth once (1 GiB, {a.threads} threads) ...")
        if a.builds is None:
            from unigemma.bench_model import measure_read_bandwidth

            read_bw = measure_read_bandwidth(a.threads)
        else:
            read_bw = probe_bandwidth(envs[labels[0]], a.threads)
        bw_source = "measured (1 GiB probe, best of 5)" + (f", build {labels[0]}" if a.builds else "")
    else:
        read_bw, bw_source = a.bw, "--bw"
    llama_runs = []
    runs = {b: [] for b in labels}
    versions = {b: {} for b in labels}
    build, orders = {}, []
    for rnd in range(1, a.rounds + 1):
        cmd = llama_bench_cmd(a, exe, fa)
        load0 = _loadavg()
        code, out, err, rss, secs = run_child(cmd, timeout=a.timeout)
        if code != 0:
            raise BenchError(f"llama-bench exited with {code}: {' '.join(cmd)}\n{_tail(err)}")
        r = parse_llama_json(out, a.n_prompt, a.n_gen)
        build = r.pop("build")
        r["peak_rss_bytes"], r["wall_s"] = rss, secs
        r["loadavg_1m"] = [load0, _loadavg()]
        llama_runs.append(r)
        log(f"round {rnd}: llama.cpp prefill {r['prefill_tps']:.2f} tok/s"
            + (f", decode {r['decode_tps']:.2f} tok/s" if r["decode_tps"] else "") + f", RSS {rss / 2**20:.0f} MiB")
        k = (rnd - 1) % len(labels)
        order = labels[k:] + labels[:k]
        orders.append(["llama.cpp", *order])
        for b in order:
            cmd = ours_cmd(a, read_bw)
            load0 = _loadavg()
            code, out, err, rss, secs = run_child(cmd, env=envs[b], timeout=a.timeout)
            if code != 0:
                raise BenchError(f"unigemma bench ({b}) exited with {code}: {' '.join(cmd)}\n{_tail(err)}")
            try:
                o = json.loads(out.strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError):
                raise BenchError(f"unigemma bench ({b}) printed no JSON: {_tail(out + err)}") from None
            versions[b] = o.get("versions", {})
            runs[b].append({"prefill_tps": o["prefill_tps"], "decode_tps": o["decode_tps"], "ttft_s": o["ttft_s"],
                            "peak_rss_bytes": rss, "wall_s": secs, "self_peak_rss_bytes": o["peak_rss_bytes"],
                            "decode_bw_fraction": o["decode_bw_fraction"],
                            "bytes_per_token": (o["weight_bytes_read_per_token"] + (o["kv_bytes_read_per_token"] or 0)),
                            "loadavg_1m": [load0, _loadavg()]})
            name = "ours" if a.builds is None else b
            log(f"round {rnd}: {name} prefill {o['prefill_tps']:.2f} tok/s"
                + (f", decode {o['decode_tps']:.2f} tok/s" if o["decode_tps"] else "") + f", RSS {rss / 2**20:.0f} MiB")
    ours_runs = runs[labels[0]]
    # llama.cpp's bandwidth use counted with our bytes per decoded token (same file, same context)
    per_tok = statistics.median(r["bytes_per_token"] for r in ours_runs)
    for r in llama_runs:
        r["decode_bw_fraction"] = per_tok * r["decode_tps"] / 1e9 / read_bw if r["decode_tps"] else None
    rows = summarize(llama_runs, runs, labels)
    loads = [x for r in llama_runs + [r for b in labels for r in runs[b]] for x in r["loadavg_1m"] if x is not None]
    if loads:
        n_cpu = os.cpu_count() or 1
        notes.append(f"1-minute load average around the runs {min(loads):.1f}-{max(loads):.1f} on {n_cpu} CPUs"
                     + (" (other work was running: expect noise, compare only within these rounds)"
                        if max(loads) > n_cpu + 0.5 else ""))
    if multi:
        per_b = {b: statistics.median(r["bytes_per_token"] for r in runs[b]) for b in labels}
        if len(set(per_b.values())) > 1:
            notes.append("the builds count different bytes per decoded token: " +
                         ", ".join(f"{b} {v / 2**20:.1f} MiB" for b, v in per_b.items()))
        notes.append(f"round order: llama.cpp, then the builds rotated by one per round ({'; '.join(', '.join(o) for o in orders)})")

    who = "ours" if not multi else ", ".join(labels)
    print(f"model {a.model}: -p {a.n_prompt} -n {a.n_gen} --depth {a.depth} -t {a.threads}, "
          f"K/V {a.kv_k}/{a.kv_v}, {a.rounds} alternating rounds (llama.cpp, {who}), 1 repetition each")
    print(f"llama.cpp: llama-bench build {build.get('build_commit')} ({build.get('build_number')}), "
          f"backends {build.get('backends')}, cpu {build.get('cpu_info')}, n_threads {build.get('n_threads')}, "
          f"type_k {build.get('type_k')}, type_v {build.get('type_v')}, flash_attn {build.get('flash_attn')}")
    tool_commit = _tool_git_commit()
    for b in labels:
        v = versions[b]
        name = "ours" if a.builds is None else f"{b}"
        print(f"{name}: unigemma {v.get('unigemma')} (package git {v.get('git_commit')}, "
              f"{idents[b]['package']}, _core sha256 {idents[b]['core_sha256']}), "
              f"ISA {v.get('isa')}, act {a.precision}")
    print(f"this tool's checkout {tool_commit}; read bandwidth {read_bw:.1f} GB/s ({bw_source})")
    print(format_table(rows, a.markdown))
    for n in notes:
        print(f"note: {n}")
    if a.json_out:
        rec = {"model": a.model, "n_prompt": a.n_prompt, "n_gen": a.n_gen, "depth": a.depth, "threads": a.threads,
               "rounds": a.rounds, "kv_type_k": a.kv_k, "kv_type_v": a.kv_v, "flash_attn": fa, "ctx": a.ctx,
               "read_bw_gbs": read_bw, "read_bw_source": bw_source, "llama_build": build,
               "ours_versions": versions[labels[0]], "tool_git_commit": tool_commit, "llama_runs": llama_runs,
               "ours_runs": ours_runs, "metrics": rows,
               "builds": [{"label": b, "pythonpath": paths[b], **idents[b], "versions": versions[b], "runs": runs[b]}
                          for b in labels],
               "round_order": orders, "notes": notes}
        Path(a.json_out).write_text(json.dumps(rec, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

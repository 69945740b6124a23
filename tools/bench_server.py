#!/usr/bin/env python3
"""Aggregate generation throughput of `unigemma serve` vs llama-server on the same GGUF.

For each P in --parallel, starts the server with P slots (llama-server: -np P, -c P*ctx, since
its context is split across slots; continuous batching is on by default), runs P concurrent
streaming clients that each send --requests /v1/completions requests (the same raw prompt, no
chat template, ignore_eos so every request generates exactly --tokens tokens), and reports
aggregate completion tokens/s over the wall time of the run (prompt evaluation included),
plus the mean time to first token. Both servers get the same thread count.

    python tools/bench_server.py --model /path/model.gguf --llama-bin DIR --parallel 1 4 8 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import http.client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, proc, timeout: float = 300) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("server did not come up")


def one_request(port: int, prompt: str, tokens: int) -> tuple[int, float, float]:
    """-> (completion tokens, time to first token, total time) of one streamed completion."""
    body = json.dumps({"prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
                       "ignore_eos": True, "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
    ttft, n, usage = None, 0, None
    for line in r:
        if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            usage = ev["usage"]["completion_tokens"]
        if ev.get("choices") and ev["choices"][0].get("text"):
            n += 1
            if ttft is None:
                ttft = time.perf_counter() - t0
    c.close()
    return (usage if usage is not None else n), (ttft or 0.0), time.perf_counter() - t0


def run_load(port: int, parallel: int, requests: int, prompt: str, tokens: int) -> dict:
    results, errors = [], []

    def client(k: int) -> None:
        for _ in range(requests):
            try:
                results.append(one_request(port, f"{prompt} (client {k})", tokens))
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
    one_request(port, prompt, 4)  # warm-up
    ts = [threading.Thread(target=client, args=(k,)) for k in range(parallel)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    toks = sum(r[0] for r in results)
    return {"parallel": parallel, "requests": len(results), "errors": errors[:3], "completion_tokens": toks,
            "wall_s": wall, "aggregate_tps": toks / wall, "mean_ttft_s": statistics.mean(r[1] for r in results),
            "per_stream_tps": statistics.mean(r[0] / r[2] for r in results)}


def start(kind: str, args, parallel: int, port: int):
    if kind == "unigemma":
        cmd = [sys.executable, "-m", "unigemma", "serve", args.model, "--port", str(port), "-np", str(parallel),
               "-c", str(args.ctx), "-t", str(args.threads)]
    else:
        cmd = [os.path.join(args.llama_bin, "llama-server"), "-m", args.model, "--port", str(port), "-np",
               str(parallel), "-c", str(args.ctx * parallel), "-t", str(args.threads), "-tb", str(args.threads),
               "--no-warmup"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--llama-bin", help="directory with llama-server (omit: unigemma only)")
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--requests", type=int, default=3, help="requests per client (default 3)")
    ap.add_argument("--tokens", type=int, default=64, help="completion tokens per request (default 64)")
    ap.add_argument("--ctx", type=int, default=512, help="context per slot (default 512)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--prompt", default="Write a detailed story about a lighthouse keeper who finds a map.")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    kinds = ["unigemma"] + (["llama.cpp"] if args.llama_bin else [])
    rows = []
    for p in args.parallel:
        for kind in kinds:
            port = free_port()
            proc = start(kind, args, p, port)
            try:
                wait_up(port, proc)
                r = run_load(port, p, args.requests, args.prompt, args.tokens)
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            r["server"] = kind
            rows.append(r)
            print(f"{kind:9s} P={p}: {r['aggregate_tps']:7.1f} tok/s aggregate, {r['per_stream_tps']:6.1f} tok/s per "
                  f"stream, TTFT {r['mean_ttft_s']:.2f} s, {r['requests']} requests{' ERRORS ' + str(r['errors']) if r['errors'] else ''}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "threads": args.threads, "tokens": args.tokens, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`unigemma bench MODEL` (subprocess, --json) on the real Gemma 3 270M and a tiny KV-shared
Gemma 4, with the K/V bytes per decoded token recomputed here from the GGUF metadata; and
tools/bench_vs_llamacpp.py against a fake llama-bench (plus a real one when
UNIGEMMA_LLAMA_CPP_BIN names llama.cpp's binaries)."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import pytest

import unigemma

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "bench_vs_llamacpp.py"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(unigemma.__file__)),
                                                    env.get("PYTHONPATH", "")] if p)
    return env


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "unigemma", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def bench_json(*args):
    r = cli("bench", *args, "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def g3_path():
    return str(unigemma.default_model_path())


@pytest.fixture(scope="module")
def g4_shared_path(hf_ckpt, tmp_path_factory):
    from unigemma.convert import convert

    out = tmp_path_factory.mktemp("bench") / "kv_shared-f32"
    return str(convert(hf_ckpt("kv_shared"), outtype="f32", out_prefix=out, progress=False).text)


# The tests that run a benchmark (our bench subprocess, the fake or real llama-bench) are marked
# slow: up to ~30 s each; argument and error handling stays in the quick tier.

# ------------------------------------------------------------------ independent K/V byte count

@functools.cache
def gguf_facts(path: str) -> tuple[dict, int]:
    """(metadata keys except the tokenizer's, total tensor bytes) read with the gguf package."""
    r = gguf.GGUFReader(path)
    keys = {k: v.contents() for k, v in r.fields.items() if not k.startswith("tokenizer.")}
    return keys, sum(int(t.n_bytes) for t in r.tensors)


def _row(type_name: str, n: int) -> int:
    be, bb = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name.upper()]]
    return n // be * bb


def expected_kv_read(path: str, depth: int, n_gen: int, k_type: str, v_type: str) -> float:
    """Mean K+V bytes read per decoded token at positions depth..depth+n_gen-1, from the GGUF
    keys: every layer reads, per visible position, one K and one V row per KV head; a layer
    sees min(pos+1, window) positions if sliding, pos+1 if not; a KV-shared layer (the last
    shared_kv_layers) reads the cache of the last earlier non-shared layer of its kind."""
    f = gguf_facts(path)[0]
    arch = f["general.architecture"]
    n = f[f"{arch}.block_count"]
    window = f[f"{arch}.attention.sliding_window"]

    def per_layer(key, default=None):
        v = f.get(f"{arch}.{key}", default)
        return list(v) if isinstance(v, list) else [v] * n

    if arch == "gemma3":  # 5 sliding layers, then 1 full (Gemma 3's fixed pattern)
        sliding = [(i + 1) % 6 != 0 for i in range(n)]
    else:
        sliding = [bool(x) for x in f[f"{arch}.attention.sliding_window_pattern"]]
    kv_heads = per_layer("attention.head_count_kv")
    k_len = [f.get(f"{arch}.attention.key_length_swa", f[f"{arch}.attention.key_length"]) if s
             else f[f"{arch}.attention.key_length"] for s in sliding]
    v_len = [f.get(f"{arch}.attention.value_length_swa", f[f"{arch}.attention.value_length"]) if s
             else f[f"{arch}.attention.value_length"] for s in sliding]
    first_shared = n - f.get(f"{arch}.attention.shared_kv_layers", 0)
    src = list(range(n))
    for i in range(first_shared, n):
        src[i] = max(j for j in range(first_shared) if sliding[j] == sliding[i])
    total = 0
    for pos in range(depth, depth + n_gen):
        for i in range(n):
            seen = min(pos + 1, window) if sliding[i] else pos + 1
            s = src[i]
            total += seen * kv_heads[s] * (_row(k_type, k_len[s]) + _row(v_type, v_len[s]))
    return total / n_gen


def check_common(res: dict, path: str, n_prompt: int, n_gen: int, reps: int, bw: float | None):
    for key in ("prefill_tps", "decode_tps", "ttft_s", "load_s", "ttft_cold_s", "peak_rss_bytes",
                "rss_after_load_bytes", "kv_bytes", "kv_bytes_at_n_ctx", "kv_bytes_read_per_token", "weight_bytes",
                "weight_bytes_read_per_token", "decode_bw_gbs", "read_bw_gbs", "decode_bw_fraction", "threads"):
        assert isinstance(res[key], (int, float)) and res[key] > 0, (key, res[key])
    assert res["n_prompt"] == n_prompt and res["n_gen"] == n_gen and res["reps"] == reps
    assert len(res["prefill_tps_all"]) == len(res["decode_tps_all"]) == len(res["ttft_s_all"]) == reps
    assert res["ttft_cold_s"] > res["load_s"] and res["ttft_cold_s"] > min(res["ttft_s_all"])
    # memory: the mapped weights are all touched by a decode step; nothing like 2x of them
    wb = res["weight_bytes"]
    assert res["peak_rss_bytes"] >= max(res["rss_after_load_bytes"], wb)
    assert res["peak_rss_bytes"] < 2 * wb + (512 << 20)
    assert 0 < res["kv_bytes"] <= res["kv_bytes_at_n_ctx"] * 1.0001 + (1 << 20)
    assert res["file_bytes"] == os.path.getsize(path) and wb < res["file_bytes"]
    # tied head: every tensor is read once per decoded token
    assert res["weight_bytes_read_per_token"] == wb == gguf_facts(path)[1]
    if bw is not None:
        assert res["read_bw_gbs"] == bw and res["read_bw_source"] == "--bw"
    assert res["versions"]["unigemma"] == unigemma.__version__


@pytest.mark.slow
def test_bench_json_gemma3(g3_path):
    res = bench_json(g3_path, "-p", "24", "-n", "5", "-r", "2", "-t", "1", "--bw", "20")
    check_common(res, g3_path, 24, 5, 2, 20.0)
    assert res["threads"] == 1 and res["depth"] == 0 and res["n_ctx"] == 29 and res["arch"] == "gemma3"
    assert (res["kv_type_k"], res["kv_type_v"]) == ("f16", "f16")
    assert res["kv_bytes_read_per_token"] == pytest.approx(expected_kv_read(g3_path, 0, 5, "f16", "f16"), rel=1e-12)
    assert res["kv_bytes_at_n_ctx"] == unigemma._core.TextModel(g3_path).kv_cache_bytes(29, 512, "f16", "f16")


@pytest.mark.slow
def test_bench_depth_and_quantized_kv_gemma4_shared(g4_shared_path):
    """Decode at depth 40 (past the 16-token window): the sliding layers read 16 positions,
    the full ones 41-46; the two KV-shared layers read their source layers' caches."""
    res = bench_json("model", g4_shared_path, "-p", "8", "-n", "6", "-r", "3", "-t", "1", "--depth", "40",
                     "--kv-k", "q8_0", "--kv-v", "q4_0", "--bw", "12.5")
    check_common(res, g4_shared_path, 8, 6, 3, 12.5)
    assert res["depth"] == 40 and res["n_ctx"] == 54 and (res["kv_type_k"], res["kv_type_v"]) == ("q8_0", "q4_0")
    want = expected_kv_read(g4_shared_path, 40, 6, "q8_0", "q4_0")
    assert res["kv_bytes_read_per_token"] == pytest.approx(want, rel=1e-12)
    # depth changes what decode reads: the same run at depth 0 reads fewer K/V bytes
    res0 = bench_json(g4_shared_path, "-p", "8", "-n", "6", "-r", "1", "-t", "1", "--kv", "f16", "--bw", "12.5",
                      "--ctx", "64")
    assert res0["n_ctx"] == 64 and res0["depth"] == 0
    assert res0["kv_bytes_read_per_token"] == pytest.approx(expected_kv_read(g4_shared_path, 0, 6, "f16", "f16"))
    assert res0["kv_bytes_read_per_token"] < res["kv_bytes_read_per_token"]


@pytest.mark.slow
def test_bench_decode_after_prompt_and_short_warmup(g4_shared_path):
    """--decode-after-prompt decodes at depth + p (one long prompt measures both), so decode
    reads the K/V of positions 10+8.. ; --warmup-tokens shortens only the untimed warm-up."""
    res = bench_json(g4_shared_path, "-p", "8", "-n", "6", "-r", "2", "-t", "1", "--depth", "10",
                     "--decode-after-prompt", "--warmup-tokens", "3", "--bw", "12.5")
    check_common(res, g4_shared_path, 8, 6, 2, 12.5)
    assert res["decode_after_prompt"] and res["decode_context"] == 18 and res["n_ctx"] == 24
    assert res["kv_bytes_read_per_token"] == pytest.approx(expected_kv_read(g4_shared_path, 18, 6, "f16", "f16"),
                                                           rel=1e-12)
    # --reserve-kv: the whole context's cache is allocated before the first eval
    big = bench_json(g4_shared_path, "-p", "4", "-n", "2", "-r", "1", "-t", "1", "--ctx", "4000", "--reserve-kv",
                     "--bw", "12.5")
    assert big["reserve_kv"] and big["kv_bytes"] == big["kv_bytes_at_n_ctx"]
    small = bench_json(g4_shared_path, "-p", "4", "-n", "2", "-r", "1", "-t", "1", "--ctx", "4000", "--bw", "12.5")
    assert small["kv_bytes"] < small["kv_bytes_at_n_ctx"] == big["kv_bytes_at_n_ctx"]


@pytest.mark.slow
def test_bench_human_output_and_measured_bandwidth(g3_path):
    r = cli("bench", g3_path, "-p", "8", "-n", "2", "-r", "1", "-t", "1")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for word in ("prefill   8 tokens", "decode    2 tokens at depth 0", "TTFT", "peak RSS", "KV",
                 "% of the read bandwidth", "measured: 1 GiB probe", "unigemma " + unigemma.__version__):
        assert word in out, (word, out)
    assert "measuring the read bandwidth" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, msg", [
    (["-p", "0"], "-p >= 1"),
    (["-r", "0"], "-r >= 1"),
    (["--depth", "-1"], "--depth >= 0"),
    (["--kv", "q8_0", "--kv-k", "f16"], "not both"),
    (["--ctx", "10", "-p", "16"], "--ctx 10 is too small"),
    (["--bw", "0"], "--bw must be > 0"),
    (["--warmup-tokens", "0"], "--warmup-tokens must be >= 1"),
    (["--kv", "q5_1"], "invalid choice"),
    (["-p", "many"], "invalid int value"),
])
def test_bench_bad_arguments(g3_path, args, msg):
    r = cli("bench", g3_path, "-n", "2", "--bw", "10", *args)
    assert r.returncode != 0 and r.stdout == ""
    assert msg in r.stderr and "Traceback" not in r.stderr


def test_bench_missing_model_and_subcommands(tmp_path):
    r = cli("bench", str(tmp_path / "nope.gguf"), "--bw", "10")
    assert r.returncode == 1 and "no such model file" in r.stderr and "nope.gguf" in r.stderr
    assert "Traceback" not in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    r = cli("bench", str(bad), "--bw", "10")
    assert r.returncode == 1 and "error:" in r.stderr and "Traceback" not in r.stderr
    r = cli("bench")
    assert r.returncode == 2 and "required" in r.stderr
    r = cli("bench", "kernels", "--ops", "nope")  # the other sub-commands still parse as before
    assert r.returncode == 2 and "--ops takes gemv" in r.stderr


# ------------------------------------------------------------------ bench_vs_llamacpp.py

FAKE_LLAMA_BENCH = r'''#!{python}
"""Prints llama-bench-shaped JSON: pp {pp} tok/s and tg {tg} tok/s on successive calls."""
import json, os, sys
args = sys.argv[1:]
log = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.jsonl")
calls = sum(1 for _ in open(log)) if os.path.exists(log) else 0
with open(log, "a") as f:
    f.write(json.dumps(args) + "\n")
if os.environ.get("FAKE_LLAMA_BAD"):
    print("not json"); sys.exit(0)
ballast = bytearray(96 << 20)  # touched: the peak RSS the harness must see via wait4
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
opt = lambda k: args[args.index(k) + 1]
p, n, d = int(opt("-p")), int(opt("-n")), int(opt("-d")) if "-d" in args else 0
base = dict(build_commit="fake123", build_number=7, cpu_info="FakeCPU", gpu_info="", backends="CPU",
            model_filename=opt("-m"), model_type="fake", n_threads=int(opt("-t")), type_k=opt("-ctk"),
            type_v=opt("-ctv"), flash_attn=opt("-fa") == "on", n_depth=d)
pp, tg = {pp}[calls % {n}], {tg}[calls % {n}]
out = [dict(base, n_prompt=p, n_gen=0, avg_ts=pp, samples_ts=[pp], avg_ns=int(p / pp * 1e9))]
if n:
    out.append(dict(base, n_prompt=0, n_gen=n, avg_ts=tg, samples_ts=[tg], avg_ns=int(n / tg * 1e9)))
print(json.dumps(out, indent=2))
'''


def make_fake_llama(tmp_path: Path, pp=(100.0, 300.0), tg=(40.0, 60.0)) -> Path:
    d = tmp_path / "fakebin"
    d.mkdir()
    exe = d / "llama-bench"
    exe.write_text(FAKE_LLAMA_BENCH.replace("{python}", sys.executable).replace("{pp}", repr(list(pp)))
                   .replace("{tg}", repr(list(tg))).replace("{n}", str(len(pp))))
    exe.chmod(0o755)
    return d


def tool(*args, env_extra=None, timeout=600):
    env = _env()
    env.pop("UNIGEMMA_LLAMA_CPP_BIN", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_bench_vs_llamacpp_with_fake_llama_bench(tmp_path, g3_path):
    fake = make_fake_llama(tmp_path)
    out = tmp_path / "cmp.json"
    r = tool(g3_path, "-p", "16", "-n", "4", "-t", "1", "--rounds", "2", "--kv-k", "q8_0", "--kv-v", "q4_0",
             "--depth", "3", "--bw", "20", "--llama-bin", str(fake), "--json", str(out))
    assert r.returncode == 0, r.stderr
    rec = json.loads(out.read_text())
    calls = [json.loads(x) for x in (fake / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 2  # one llama-bench run per round, one repetition each, same settings as ours
    for c in calls:
        pairs = {c[i]: c[i + 1] for i in range(len(c) - 1) if c[i].startswith("-")}
        assert pairs["-m"] == g3_path and pairs["-p"] == "16" and pairs["-n"] == "4" and pairs["-t"] == "1"
        assert pairs["-r"] == "1" and pairs["-o"] == "json" and pairs["-d"] == "3"
        assert pairs["-ctk"] == "q8_0" and pairs["-ctv"] == "q4_0"
        assert pairs["-fa"] == "on"  # a quantized V cache needs flash attention in llama.cpp
    assert rec["flash_attn"] is True and any("flash attention turned on" in n for n in rec["notes"])
    m = {row["metric"]: row for row in rec["metrics"]}
    assert m["prefill_tps"]["llama_all"] == [100.0, 300.0] and m["prefill_tps"]["llama_median"] == 200.0
    assert m["decode_tps"]["llama_median"] == 50.0
    assert m["ttft_s"]["llama_all"] == pytest.approx([16 / 100.0, 16 / 300.0])
    assert len(m["prefill_tps"]["ours_all"]) == 2 and all(v > 0 for v in m["prefill_tps"]["ours_all"])
    assert m["ttft_s"]["better"] == "lower" and m["peak_rss_bytes"]["better"] == "lower"
    assert m["decode_tps"]["better"] == "higher"
    # wait4 saw the fake's 96 MiB ballast; ours maps the 270M's weights
    assert all(v >= 96 << 20 for v in m["peak_rss_bytes"]["llama_all"])
    assert all(v >= 200 << 20 for v in m["peak_rss_bytes"]["ours_all"])
    assert rec["llama_build"]["build_commit"] == "fake123" and rec["llama_build"]["cpu_info"] == "FakeCPU"
    assert rec["llama_build"]["type_v"] == "q4_0" and rec["read_bw_gbs"] == 20.0
    for word in ("fake123", "ours / llama.cpp", "prefill tok/s", "time to first token", "peak RSS",
                 "its prefill time"):
        assert word in r.stdout, (word, r.stdout)
    line = next(x for x in r.stdout.splitlines() if x.startswith("prefill tok/s"))
    assert f"{m['prefill_tps']['ratio']:.2f}" in line and "200.00 (100.00, 300.00)" in line


@pytest.mark.slow
def test_bench_vs_llamacpp_markdown_and_errors(tmp_path, g3_path):
    fake = make_fake_llama(tmp_path, pp=(50.0,), tg=(10.0,))
    r = tool(g3_path, "-p", "8", "-n", "0", "-t", "1", "--rounds", "1", "--bw", "20", "--markdown",
             env_extra={"UNIGEMMA_LLAMA_CPP_BIN": str(fake)})
    assert r.returncode == 0, r.stderr
    assert "| prefill tok/s | 50.00 (50.00) |" in r.stdout and "decode tok/s" not in r.stdout
    call = json.loads((fake / "calls.jsonl").read_text().splitlines()[0])
    assert call[call.index("-fa") + 1] == "off" and "-d" not in call
    r = tool(g3_path, "--bw", "20")  # no binaries given
    assert r.returncode == 2 and "UNIGEMMA_LLAMA_CPP_BIN" in r.stderr and "Traceback" not in r.stderr
    r = tool(g3_path, "--llama-bin", str(tmp_path))
    assert r.returncode == 2 and "no executable llama-bench" in r.stderr
    r = tool(str(tmp_path / "none.gguf"), "--llama-bin", str(fake))
    assert r.returncode == 2 and "no such model file" in r.stderr
    r = tool(g3_path, "--llama-bin", str(fake), "--rounds", "0")
    assert r.returncode == 2 and "--rounds >= 1" in r.stderr
    r = tool(g3_path, "-p", "8", "-n", "1", "--rounds", "1", "--bw", "20", "--llama-bin", str(fake),
             env_extra={"FAKE_LLAMA_BAD": "1"})
    assert r.returncode == 1 and "llama-bench printed no JSON" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.skipif(not os.path.isfile(os.path.join(os.environ.get("UNIGEMMA_LLAMA_CPP_BIN", ""), "llama-bench")),
                    reason="llama.cpp oracle: set UNIGEMMA_LLAMA_CPP_BIN to a llama.cpp build directory "
                           "holding llama-bench (cmake --build build --target llama-bench; then build/bin)")
@pytest.mark.slow
def test_bench_vs_real_llamacpp(tmp_path, g3_path):
    out = tmp_path / "real.json"
    env = {"UNIGEMMA_LLAMA_CPP_BIN": os.environ["UNIGEMMA_LLAMA_CPP_BIN"]}
    r = tool(g3_path, "-p", "16", "-n", "4", "-t", "1", "--rounds", "1", "--bw", "20", "--json", str(out),
             env_extra=env)
    assert r.returncode == 0, r.stderr
    rec = json.loads(out.read_text())
    assert rec["llama_build"]["build_commit"] and rec["llama_build"]["n_threads"] == 1
    assert rec["llama_build"]["type_k"] == "f16" and rec["llama_build"]["flash_attn"] in (0, False, "off")
    for row in rec["metrics"]:
        assert row["llama_median"] > 0 and row["ours_median"] > 0 and row["ratio"] > 0, row
    # same file, same work: the two runtimes are within 20x of each other on every metric
    assert all(0.05 < row["ratio"] < 20 for row in rec["metrics"])

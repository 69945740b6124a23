"""Partial GPU offload planning (csrc/model/offload_plan.h): which decoder layers go to the GPU.

`plan(model, n_ctx, device_free, n_gpu_layers=-1, ...)` sums the model's per-layer weight and KV
bytes at n_ctx and returns the C++ planner's dict: on_gpu (per layer), n_gpu, head_on_gpu,
gpu_bytes, cpu_bytes, max_fit. n_gpu_layers: -1 every layer and the head (InputError when they do
not fit), -2 as many as fit, N the last N layers.
"""
from __future__ import annotations

from . import _core

# Activations, attention workspace and CUDA-graph buffers kept free on the device by default.
DEFAULT_COMPUTE_RESERVE = 1 << 30


def plan(model: "_core.TextModel", n_ctx: int, device_free: int, n_gpu_layers: int = -1, *,
         n_ubatch: int = 512, k_type: str = "f16", v_type: str = "f16",
         compute_reserve: int = DEFAULT_COMPUTE_RESERVE) -> dict:
    sizes = _core.offload_sizes(model, n_ctx, n_ubatch, k_type, v_type)
    return _core.plan_offload(sizes["layer_weight_bytes"], sizes["layer_kv_bytes"], sizes["kv_source"],
                              sizes["head_bytes"], sizes["embd_bytes"], sizes["head_tied"], compute_reserve,
                              device_free, n_gpu_layers)

"""The converter streams: converting a checkpoint whose weights are many times larger than
its largest tensor raises the process's peak RSS by about that tensor, not by the model."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from synthetic_checkpoint import write_checkpoint


def peak_rss_of(cmd: list[str]) -> int:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    assert proc.returncode == 0, err
    return usage.ru_maxrss * 1024  # Linux reports KiB


@pytest.mark.slow  # converts a 480 MiB checkpoint: ~25 s
def test_peak_memory_tracks_largest_tensor_not_model(tmp_path):
    # 20 layers x 3 x (2048 x 1024) f32 = 480 MiB of weights, largest tensor 8 MiB
    dims = dict(hidden=1024, intermediate=2048, head_dim=128, global_head_dim=256, n_heads=4, n_kv=2)
    big = write_checkpoint(tmp_path / "big", n_layers=20, **dims)
    small = write_checkpoint(tmp_path / "small", n_layers=1, **dims)
    model_bytes = sum(p.stat().st_size for p in big.glob("*.safetensors"))
    largest = 2048 * 1024 * 4
    assert model_bytes > 60 * largest
    outtype = "q8_0"  # streaming is the same for every type; q8_0 keeps the test fast
    conv = [sys.executable, "-m", "unigemma", "convert", "--outtype", outtype, "-q", "-t", "2"]
    base = peak_rss_of(conv + [str(small), "-o", str(tmp_path / "s")])
    peak = peak_rss_of(conv + [str(big), "-o", str(tmp_path / "b")])
    grew = peak - base
    assert grew < 6 * largest, f"peak RSS grew by {grew / 2**20:.0f} MiB for a {model_bytes / 2**20:.0f} MiB model"

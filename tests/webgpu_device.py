"""Shared by the WebGPU tests: the adapter (Mesa's lavapipe on machines without a GPU), opened
once per process, or a skip that says how to get one."""
from __future__ import annotations

import pytest

from unigemma import _core

HOW = ("no WebGPU adapter: install a Vulkan driver (on Debian, `apt-get install mesa-vulkan-drivers "
       "libvulkan1` gives Mesa's lavapipe, a CPU implementation; .ci/run installs it)")


def adapter() -> dict:
    from unigemma import webgpu

    try:
        return webgpu.open_device()
    except _core.DeviceError as e:
        pytest.skip(f"{HOW}: {e}")

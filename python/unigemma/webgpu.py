"""The WebGPU device: finding the wgpu-native library of the pinned ``wgpu`` wheel, opening the
adapter once per process, and the ``device="auto"|"cpu"|"gpu"`` choice.

The C++ core was compiled against the headers of one exact ``wgpu`` release (pyproject.toml
pins it for the build and at run time); the installed one must be that release, since the C
API changes between releases. ``UNIGEMMA_WEBGPU=0`` hides the GPU (as if no adapter were
found): ``device="auto"`` then runs on the CPU and ``device="gpu"`` raises.
"""
from __future__ import annotations

import os

from . import _core

_opened: dict | None = None


def library_path() -> str:
    """Path of the wgpu-native library inside the installed ``wgpu`` wheel (DeviceError when
    it is missing or not the release this build was compiled against)."""
    if not _core.webgpu_built():
        raise _core.DeviceError("[webgpu] this build of unigemma has no WebGPU backend "
                                "(wgpu was not importable when it was compiled)")
    try:
        import wgpu
        from wgpu.backends.wgpu_native import _ffi
    except Exception as e:  # noqa: BLE001 - any import failure means no GPU runtime
        raise _core.DeviceError(f"[webgpu] the wgpu package is not importable: {e} (pip install wgpu)") from e
    want = _core.build_info()["webgpu_headers"]
    if wgpu.__version__ != want:
        raise _core.DeviceError(f"[webgpu] unigemma was built against wgpu {want}, but wgpu {wgpu.__version__} is "
                                f"installed (pip install wgpu=={want})")
    return _ffi.get_wgpu_lib_path()


def open_device() -> dict:
    """Opens the process's WebGPU adapter (once) and returns its description and limits."""
    global _opened
    if _opened is not None:
        return _opened
    if os.environ.get("UNIGEMMA_WEBGPU", "1") == "0":
        raise _core.DeviceError("[webgpu] no GPU adapter: UNIGEMMA_WEBGPU=0 hides the GPU")
    info = _core.webgpu_open(library_path())
    _opened = dict(info)
    return _opened


def resolve(device: str) -> tuple[str, str | None]:
    """The backend for ``device`` ("auto", "cpu" or "gpu"): ("webgpu" | "cpu", why the GPU is
    not used or None). "gpu" takes any adapter (a software one such as Mesa's lavapipe
    included: that is how the GPU path is tested without a GPU) and raises DeviceError when
    there is none; "auto" takes a hardware GPU only and otherwise runs on the CPU, with the
    reason."""
    if device not in ("auto", "cpu", "gpu"):
        raise _core.InputError(f"[device] device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    if device == "cpu":
        return "cpu", None
    try:
        info = open_device()
    except _core.DeviceError as e:
        if device == "gpu":
            raise
        return "cpu", str(e)
    if device == "auto" and info.get("adapter_type") == "CPU":
        return "cpu", (f"the only WebGPU adapter is a software one ({info.get('device')}); "
                       f"device='gpu' uses it anyway")
    return "webgpu", None

"""Media preprocessing: files or arrays -> the exact inputs the transformers `gemma4_unified`
processor produces (image patches + position ids, audio frames, video frames + timestamps).

Everything here is NumPy/Pillow/soundfile/soxr/PyAV on the host; the embedders that turn the
patches and frames into text-stream vectors are C++ (`unigemma._core.MMProjector`).
"""
from .errors import MediaError

__all__ = ["MediaError"]

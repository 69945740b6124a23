"""Media preprocessing: files or arrays -> the exact inputs the transformers `gemma4_unified`
processor produces (image patches + position ids, audio frames, video frames + timestamps).

Everything here is NumPy/Pillow/soundfile/soxr/PyAV on the host, plus the torch-exact
antialiased bicubic resize in C++ (`unigemma._core.resize_bicubic_aa`); the embedders that turn
the patches and frames into text-stream vectors are C++ (`unigemma._core.MMProjector`).
"""
from .errors import MediaError
from .image import (
    MAX_IMAGE_PIXELS,
    SUPPORTED_BUDGETS,
    VisionPatches,
    image_token_count,
    load_image,
    preprocess_image,
    resized_size,
)
from .video import VideoFrames, load_video, preprocess_video, video_prompt_timestamps

__all__ = [
    "MediaError",
    "MAX_IMAGE_PIXELS",
    "SUPPORTED_BUDGETS",
    "VisionPatches",
    "image_token_count",
    "load_image",
    "preprocess_image",
    "resized_size",
    "VideoFrames",
    "load_video",
    "preprocess_video",
    "video_prompt_timestamps",
]

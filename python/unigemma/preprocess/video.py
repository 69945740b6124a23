"""Videos -> sampled frames -> per-frame Gemma 4 Unified vision patches, bit-exact with
transformers 5.23.0 (`video_utils.load_video(backend="pyav")` with the processor's default
frame sampling, then `Gemma4UnifiedVideoProcessor`).

- Sampling (transformers' `default_sample_indices_fn`, num_frames = 32): with T frames in the
  stream, frame indices are floor(i * T / n) for i in [0, n); timestamps are index / fps,
  fps being the stream's average frame rate, and duration T / fps.
- Frames are decoded with PyAV in presentation order and converted with
  `frame.to_ndarray(format="rgb24")` (FFmpeg's swscale), as transformers does.
- Per frame: the image resize (default budget 70 tokens), then uint8 -> float32 as x / 255:
  the video processor has do_normalize=True with mean 0 and std 1, which transformers fuses
  with the rescale into normalize(mean * 255, std * 255), a float32 division by 255.0 (not the
  image processor's multiplication by float32(1/255); 126 of the 256 values differ by an ulp).

Choices where transformers fails or is silent are in docs/preprocessing.md: a stream with fewer
frames than requested yields all its frames (transformers raises); a container that records
no frame count (Matroska/WebM) gets its frames counted by demuxing (transformers raises).
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import MediaError
from .image import (
    MAX_IMAGE_PIXELS,
    VisionPatches,
    _check_budget,
    patchify,
    resized_size,
)

DEFAULT_NUM_FRAMES = 32
DEFAULT_VIDEO_BUDGET = 70
MAX_VIDEO_SECONDS = 60.0  # the model card's limit
# Decoded frames kept in memory at most (bytes): 32 frames of 4K RGB are ~800 MB.
MAX_FRAME_BYTES = 4 << 30

# uint8 -> float32 as the video processor computes it: (x - 0) / 255 in float32.
_NORMALIZE_LUT = np.arange(256, dtype=np.float32) / np.float32(255.0)


@dataclass
class VideoFrames:
    """Sampled frames of one video.

    frames: uint8 (T, H, W, 3) RGB.
    timestamps: seconds of each sampled frame (index / fps).
    fps: the stream's average frame rate.
    duration: total frames / fps, seconds.
    indices: the sampled frame indices (presentation order).
    """

    frames: np.ndarray
    timestamps: list[float]
    fps: float
    duration: float
    indices: list[int] = field(default_factory=list)


def sample_frame_indices(total_frames: int, num_frames: int = DEFAULT_NUM_FRAMES) -> np.ndarray:
    """transformers' uniform sampling: floor(i * total / n) for i < n, n = min(num_frames,
    total) (transformers raises instead when num_frames > total)."""
    n = min(int(num_frames), int(total_frames))
    return np.arange(n, dtype=np.int64) * int(total_frames) // n


def _open_container(src, name: str):
    import av

    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise MediaError("load_video(<0 bytes>): empty input")
        target = io.BytesIO(bytes(src))
    else:
        target = os.fspath(src)
    try:
        return av.open(target, mode="r")
    except av.error.FFmpegError as e:
        raise MediaError(f"load_video({name}): not a readable video container: {e}") from e
    except (OSError, ValueError) as e:
        raise MediaError(f"load_video({name}): cannot open: {e}") from e


def _frame_rate(stream):
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0:
            return rate
    return None


def _count_packets(src, name: str) -> int:
    """Frames of the first video stream counted by demuxing (no decoding), for containers that
    do not record a frame count. Empty packets (end-of-stream flushes) do not count."""
    with _open_container(src, name) as container:
        stream = container.streams.video[0]
        try:
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        except Exception as e:
            raise MediaError(f"load_video({name}): corrupt container while counting frames: {e}") from e


def load_video(
    src,
    num_frames: int = DEFAULT_NUM_FRAMES,
    max_seconds: float | None = MAX_VIDEO_SECONDS,
) -> VideoFrames:
    """Decode `num_frames` uniformly sampled frames of a video file (path or bytes) with PyAV.

    Raises MediaError for a missing or corrupt file, no video stream, an unknown frame rate,
    a codec that cannot be decoded, frames larger than the image pixel limit, or a duration
    over `max_seconds` (60 s, the model card's limit; None disables the check). The duration
    check uses the container's metadata, before any frame is decoded.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise MediaError(f"load_video: num_frames must be a positive int, got {num_frames!r}")
    if max_seconds is not None and (
        isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not max_seconds > 0
    ):
        raise MediaError(f"load_video: max_seconds must be a positive number or None, got {max_seconds!r}")
    if isinstance(src, (str, os.PathLike)):
        name = repr(os.fspath(src))
        if not os.path.isfile(os.fspath(src)):
            raise MediaError(f"load_video({name}): no such file")
    elif isinstance(src, (bytes, bytearray, memoryview)):
        name = f"<{len(src)} bytes>"
    else:
        raise MediaError(f"load_video: unsupported source type {type(src).__name__} (expected a path or bytes)")
    try:
        import av  # noqa: F401
    except ImportError as e:  # pragma: no cover - av is a dependency
        raise MediaError("load_video: PyAV (package 'av') is not installed") from e

    with _open_container(src, name) as container:
        if not container.streams.video:
            raise MediaError(f"load_video({name}): the file has no video stream")
        stream = container.streams.video[0]
        rate = _frame_rate(stream)
        if rate is None:
            raise MediaError(f"load_video({name}): the video stream has no frame rate")
        fps = float(rate)
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise MediaError(f"load_video({name}): the video stream has no frame size ({width}x{height})")
        if width * height > MAX_IMAGE_PIXELS:
            raise MediaError(
                f"load_video({name}): {width}x{height} frames exceed the limit of {MAX_IMAGE_PIXELS} pixels"
            )
        total = int(stream.frames)
    if total <= 0:
        total = _count_packets(src, name)
    if total <= 0:
        raise MediaError(f"load_video({name}): the video stream has no frames")
    duration = total / fps
    if max_seconds is not None and duration > max_seconds:
        raise MediaError(
            f"load_video({name}): the video is {duration:.2f} s long ({total} frames at {fps:g} fps), "
            f"over the {max_seconds:g} s limit"
        )
    indices = sample_frame_indices(total, num_frames)
    if indices.size * width * height * 3 > MAX_FRAME_BYTES:
        raise MediaError(
            f"load_video({name}): {indices.size} frames of {width}x{height} need more than "
            f"{MAX_FRAME_BYTES >> 30} GiB"
        )

    wanted = set(int(i) for i in indices)
    last = int(indices[-1])
    frames = []
    with _open_container(src, name) as container:
        stream = container.streams.video[0]
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i > last:
                    break
                if i in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
        except MediaError:
            raise
        except Exception as e:  # av.error.* for corrupt data, NotImplementedError / ValueError for codecs
            codec = getattr(stream.codec_context, "name", "?")
            raise MediaError(f"load_video({name}): cannot decode the {codec} stream: {type(e).__name__}: {e}") from e
    if len(frames) != indices.size:
        raise MediaError(
            f"load_video({name}): the stream declares {total} frames but only {len(frames)} of the "
            f"{indices.size} sampled ones (up to index {last}) could be decoded"
        )
    stacked = np.stack(frames)
    if stacked.dtype != np.uint8 or stacked.ndim != 4 or stacked.shape[3] != 3:
        raise MediaError(f"load_video({name}): decoded frames have an unusable shape {stacked.shape}")
    return VideoFrames(
        frames=stacked,
        timestamps=[int(i) / fps for i in indices],
        fps=fps,
        duration=duration,
        indices=[int(i) for i in indices],
    )


def preprocess_video(frames: VideoFrames, max_soft_tokens: int = DEFAULT_VIDEO_BUDGET) -> list[VisionPatches]:
    """Each sampled frame -> the video processor's patches (all frames share one size, so one
    `resized_hw` and token count). `frames` is a VideoFrames or a uint8 (T, H, W, 3) array."""
    from .. import _core

    op = "preprocess_video"
    _check_budget(max_soft_tokens, op)
    arr = frames.frames if isinstance(frames, VideoFrames) else frames
    if not isinstance(arr, np.ndarray):
        raise MediaError(f"{op}: expected VideoFrames or a NumPy array, got {type(frames).__name__}")
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3:
        raise MediaError(f"{op}: expected uint8 frames of shape (T, H, W, 3), got {arr.dtype} {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise MediaError(f"{op}: empty video of shape {arr.shape}")
    th, tw = resized_size(arr.shape[1], arr.shape[2], max_soft_tokens)
    out = []
    for frame in arr:
        resized = frame if (th, tw) == frame.shape[:2] else _core.resize_bicubic_aa(frame, th, tw)
        out.append(patchify(resized, _NORMALIZE_LUT))
    return out


def video_prompt_timestamps(timestamps) -> list[str]:
    """"MM:SS" per frame, as the processor writes them before each frame's image tokens:
    f"{int(s // 60):02d}:{int(s % 60):02d}" (minutes keep counting past 59)."""
    out = []
    for s in timestamps:
        if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)) or not math.isfinite(s):
            raise MediaError(f"video_prompt_timestamps: timestamps must be finite numbers, got {s!r}")
        if s < 0:
            raise MediaError(f"video_prompt_timestamps: negative timestamp {s!r}")
        out.append(f"{int(s // 60):02d}:{int(s % 60):02d}")
    return out

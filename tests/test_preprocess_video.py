"""Video preprocessing parity with transformers (video_utils.load_video(backend="pyav") with the
Gemma 4 video processor's frame sampling, then Gemma4UnifiedVideoProcessor), without torch:
sampled indices, timestamps, "MM:SS" prompt stamps, decoded frames and per-frame float32
patches against the stored oracle (tools/make_preprocess_oracle.py); the sampling rule and the
timestamp format re-derived independently; bad inputs raising MediaError.
"""
from __future__ import annotations

import hashlib
import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from unigemma import InputError
from unigemma.preprocess import (
    MediaError,
    VideoFrames,
    load_video,
    preprocess_image,
    preprocess_video,
    video_prompt_timestamps,
)
from unigemma.preprocess.video import sample_frame_indices

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MEDIA = FIXTURES / "media"
ORACLE = json.loads((FIXTURES / "preprocess_oracle.json").read_text())
ORACLE_ARRAYS = np.load(FIXTURES / "preprocess_oracle.npz")
# Decoded pixels go through FFmpeg's decoders and swscale's YUV -> RGB conversion: compare them
# bit for bit only with the PyAV/FFmpeg build the oracle was made with.
SAME_FFMPEG = (
    ".".join(map(str, av.library_versions["libavcodec"])) == ORACLE["provenance"]["versions"]["libavcodec"]
)


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def check_patches(patches, rec: dict, n_frames: int) -> None:
    assert len(patches) == n_frames
    key = rec["id"]
    positions = ORACLE_ARRAYS[f"{key}/positions"]
    for p in patches:
        assert p.resized_hw == tuple(rec["resized_hw"]) and p.n_tokens == rec["n_tokens_per_frame"]
        assert p.pixel_values.dtype == np.float32 and p.pixel_values.shape == (p.n_tokens, 6912)
        assert np.array_equal(p.positions, positions)
    stacked = np.stack([p.pixel_values for p in patches])
    if sha256(stacked) != rec["pixel_values_sha256"]:
        ref = ORACLE_ARRAYS[f"{key}/patch_sums"]
        mine = stacked.astype(np.float64).sum(axis=2)
        pytest.fail(f"video patches differ: {(mine != ref).sum()} patch sums differ, max {np.abs(mine - ref).max()}")


@pytest.mark.parametrize("rec", ORACLE["videos"], ids=lambda r: r["id"])
def test_video_matches_oracle(rec):
    v = load_video(MEDIA / rec["file"], num_frames=rec["num_frames"])
    assert v.indices == rec["indices"]
    assert v.timestamps == rec["timestamps"]  # exact: index / fps in float64
    assert v.fps == rec["fps"] and v.duration == rec["duration"]
    assert video_prompt_timestamps(v.timestamps) == rec["prompt_timestamps"]
    assert list(v.frames.shape) == rec["frames_shape"] and v.frames.dtype == np.uint8
    if SAME_FFMPEG:
        assert sha256(v.frames) == rec["frames_sha256"], "decoded frames differ from transformers' PyAV decode"
    if sha256(v.frames) == rec["frames_sha256"]:
        check_patches(preprocess_video(v, rec["budget"]), rec, len(rec["indices"]))


@pytest.mark.parametrize("rec", [r for r in ORACLE["videos"] if f"{r['id']}/frames" in ORACLE_ARRAYS],
                         ids=lambda r: r["id"])
def test_video_patches_from_stored_frames(rec):
    """The processor half alone, from the frames the oracle decoded (decoder-independent)."""
    frames = ORACLE_ARRAYS[f"{rec['id']}/frames"]
    assert sha256(frames) == rec["frames_sha256"]
    check_patches(preprocess_video(frames, rec["budget"]), rec, frames.shape[0])


def test_video_normalize_differs_from_image_rescale():
    """The video processor divides by 255; the image processor multiplies by float32(1/255)."""
    frame = (np.arange(672 * 912 * 3) % 256).astype(np.uint8).reshape(672, 912, 3)  # no resize at 280
    as_video = preprocess_video(frame[None], 280)[0].pixel_values
    as_image = preprocess_image(frame, 280).pixel_values
    first = frame[:48, :48].reshape(-1)  # patch 0 = top-left block, row, column, channel
    assert np.array_equal(as_video[0], first.astype(np.float32) / np.float32(255))
    assert np.array_equal(as_image[0], first.astype(np.float32) * np.float32(1 / 255))
    differ = as_video != as_image
    assert differ.any() and np.abs(as_video - as_image).max() <= np.spacing(np.float32(0.5))


# ---------------------------------------------------------------------------------------------
# Sampling and timestamps, re-derived


def test_sample_indices_rule():
    for total in (1, 2, 20, 31, 32, 33, 72, 45, 1440, 1799):
        for n in (1, 8, 32, 64):
            k = min(n, total)
            expected = [i * total // k for i in range(k)]  # uniform, floor, starting at frame 0
            assert sample_frame_indices(total, n).tolist() == expected
            assert len(set(expected)) == k


def test_prompt_timestamps_format():
    stamps = [0.0, 0.999, 1.0, 59.99, 60.0, 61.5, 599.0, 3599.9, 3600.0, 7325.25]
    expected = ["00:00", "00:00", "00:01", "00:59", "01:00", "01:01", "09:59", "59:59", "60:00", "122:05"]
    assert video_prompt_timestamps(stamps) == expected
    assert video_prompt_timestamps(np.array([1.5, 75.0])) == ["00:01", "01:15"]
    for bad in ([float("nan")], [float("inf")], [-1.0], ["00:01"], [None]):
        with pytest.raises(MediaError, match="video_prompt_timestamps"):
            video_prompt_timestamps(bad)


def test_short_and_countless_videos():
    short = load_video(MEDIA / "short_8fps_20f.mp4")  # 20 frames < 32: every frame
    assert short.indices == list(range(20)) and short.frames.shape[0] == 20
    mkv = load_video(MEDIA / "nocount_12fps.mkv")  # no frame count in the container: 40 counted
    assert mkv.duration == 40 / 12 and mkv.indices == [i * 40 // 32 for i in range(32)]
    few = load_video(MEDIA / "clip_24fps_3s.mp4", num_frames=4)
    assert few.indices == [0, 18, 36, 54] and few.timestamps == [0.0, 0.75, 1.5, 2.25]
    from_bytes = load_video((MEDIA / "clip_24fps_3s.mp4").read_bytes(), num_frames=4)
    assert np.array_equal(from_bytes.frames, few.frames) and from_bytes.timestamps == few.timestamps


# ---------------------------------------------------------------------------------------------
# Bad inputs


def audio_only_bytes() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        frame.pts = 0
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def test_bad_video_sources(tmp_path):
    good = (MEDIA / "clip_24fps_3s.mp4").read_bytes()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    cases = {
        "missing file": tmp_path / "nope.mp4",
        "directory": tmp_path,
        "empty bytes": b"",
        "random bytes": np.random.default_rng(5).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "text file": text,
        "header only": good[:64],
        "audio only": audio_only_bytes(),
        "int": 7,
        "array": np.zeros((2, 4, 4, 3), np.uint8),
    }
    for what, src in cases.items():
        with pytest.raises(MediaError) as ei:
            load_video(src)
        assert isinstance(ei.value, InputError), what
        assert "load_video" in str(ei.value), what


def test_truncated_video_is_an_error_not_a_crash():
    data = (MEDIA / "clip_24fps_3s.mp4").read_bytes()
    # the moov atom (index) sits at the end of this MP4: cutting the file loses it
    with pytest.raises(MediaError, match="load_video"):
        load_video(data[: len(data) // 2])


def test_video_length_limit():
    with pytest.raises(MediaError, match=r"3\.00 s long .* over the 2 s limit"):
        load_video(MEDIA / "clip_24fps_3s.mp4", max_seconds=2.0)
    assert load_video(MEDIA / "clip_24fps_3s.mp4", num_frames=2, max_seconds=None).frames.shape[0] == 2


def test_long_video_refused_before_decoding(tmp_path):
    """A 61 s clip (1 fps, tiny frames) is refused from its metadata."""
    path = tmp_path / "long.mp4"
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("mpeg4", rate=1)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        s.time_base = Fraction(1, 1)
        for i in range(61):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i, np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(MediaError, match="61.00 s long"):
        load_video(path)


def test_bad_video_arguments():
    for n in (0, -3, 2.5, True, "32", None):
        with pytest.raises(MediaError, match="num_frames"):
            load_video(MEDIA / "short_8fps_20f.mp4", num_frames=n)
    for s in (0, -1.0, "60", True, float("nan")):
        with pytest.raises(MediaError, match="max_seconds"):
            load_video(MEDIA / "short_8fps_20f.mp4", max_seconds=s)
    frames = np.zeros((2, 48, 64, 3), np.uint8)
    for bad in (frames.astype(np.float32), frames[0], frames[..., :1], np.zeros((0, 4, 4, 3), np.uint8), "x"):
        with pytest.raises(MediaError, match="preprocess_video"):
            preprocess_video(bad)
    for budget in (100, 0, "70", 70.0):
        with pytest.raises(MediaError, match="max_soft_tokens"):
            preprocess_video(frames, budget)
    ok = preprocess_video(VideoFrames(frames=frames, timestamps=[0.0, 1.0], fps=1.0, duration=2.0))
    assert len(ok) == 2 and ok[0].n_tokens == 63

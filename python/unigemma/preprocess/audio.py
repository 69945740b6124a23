"""Audio preprocessing for Gemma 4 Unified: a file (or bytes, or an array) -> 16 kHz mono float32
samples -> frames of 640 samples, one audio soft token each (40 ms).

Equal, sample for sample, to what transformers does:
  decoding  = ``transformers.audio_utils.load_audio(src, sampling_rate=16000, backend="soundfile")``
              (libsndfile decode to float32, channel mean, soxr "HQ" resampling, padded / trimmed
              to ceil(n * 16000 / sr) samples), and
  framing   = ``Gemma4UnifiedAudioFeatureExtractor`` (zero-pad to a multiple of 640, reshape).

Formats: whatever the installed libsndfile decodes (``soundfile.available_formats()``); with
libsndfile >= 1.1 that is WAV (PCM 8/16/24/32, float, double, u-law, A-law, ADPCM), FLAC,
OGG Vorbis and Opus, MP3, AIFF, CAF, W64, RF64 and a few rarer ones. AAC / M4A / MP4, WMA,
WebM / Matroska are not supported (clear MediaError: convert them first, e.g. with ffmpeg).

Length: the model card allows 30 s per clip (750 tokens). ``load_audio`` refuses longer audio
with a MediaError by default, *before* decoding it (the duration comes from the header); pass
``max_seconds=None`` to load it anyway and ``split_clips`` to cut it into clips of at most
30 s (token-aligned), each embedded as its own audio item. Nothing is ever truncated silently.

Every bad input (missing / unreadable / truncated / corrupt file, non-audio bytes, unsupported
codec, no samples, NaN or infinite samples, wrong dtype or shape, absurd sample rate) raises
``MediaError`` (a ``unigemma.InputError``) naming the source and the problem.
"""
from __future__ import annotations

import io
import math
import os
import re
import struct

import numpy as np

from .errors import MediaError

__all__ = ["SAMPLE_RATE", "SAMPLES_PER_TOKEN", "MAX_SECONDS", "load_audio", "audio_frames", "split_clips",
           "audio_token_count"]

SAMPLE_RATE = 16000        # the model's rate
SAMPLES_PER_TOKEN = 640    # 40 ms per audio soft token
MAX_SECONDS = 30.0         # per clip, from the model card (750 tokens)
MIN_SOURCE_RATE = 1000     # accepted source sample rates (Hz); outside is treated as corrupt
MAX_SOURCE_RATE = 768000
MAX_CHANNELS = 64
MAX_DECODE_SAMPLES = 1 << 28   # frames x channels decoded at once: 1 GiB of float32, whatever max_seconds


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def load_audio(src, max_seconds: float | None = MAX_SECONDS) -> np.ndarray:
    """Decode `src` to float32 mono samples at 16 kHz.

    src: a path (str / os.PathLike), the encoded file as bytes / bytearray / memoryview, a 1-D
    float ndarray already at 16 kHz, or a tuple ``(ndarray, sample_rate)`` (resampled to 16 kHz
    as a file would be). max_seconds: longest accepted duration (after resampling), None for
    no limit below the hard cap of MAX_DECODE_SAMPLES decoded values.
    """
    max_samples = _max_samples(max_seconds)
    if isinstance(src, tuple):
        if len(src) != 2:
            raise MediaError(f"[audio] a tuple source must be (waveform, sample_rate), got {len(src)} items")
        wave, rate = src
        rate = _check_rate(rate, "waveform array")
        name = f"waveform array at {rate} Hz"
        x = _check_wave(wave, name)
        _check_length(_resampled_len(x.shape[0], rate), max_samples, name)
        return _resample(x, rate)
    if isinstance(src, np.ndarray):
        name = "waveform array"
        x = _check_wave(src, name)
        _check_length(x.shape[0], max_samples, name)
        return x
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        return _decode(lambda: io.BytesIO(data), f"<{len(data)} bytes of audio>", max_samples, data[:64])
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        name = repr(path)
        if not os.path.exists(path):
            raise MediaError(f"[audio] {name}: no such file")
        if not os.path.isfile(path):
            raise MediaError(f"[audio] {name}: not a regular file")
        try:
            with open(path, "rb") as fh:
                head = fh.read(64)
        except OSError as e:
            raise MediaError(f"[audio] {name}: cannot read ({e.strerror or e})") from e
        return _decode(lambda: open(path, "rb"), name, max_samples, head)
    raise MediaError(f"[audio] unsupported source type {type(src).__name__}: pass a path, the file's bytes, "
                     "a 1-D float array at 16 kHz, or (array, sample_rate)")


def audio_frames(waveform: np.ndarray) -> np.ndarray:
    """16 kHz mono samples -> float32 (ceil(n / 640), 640): consecutive frames, the last one
    zero-padded (Gemma4UnifiedAudioFeatureExtractor's input_features of one clip)."""
    x = _check_wave(waveform, "waveform array")
    pad = (-x.shape[0]) % SAMPLES_PER_TOKEN
    if pad:
        x = np.concatenate([x, np.zeros(pad, np.float32)])
    return x.reshape(-1, SAMPLES_PER_TOKEN)


def split_clips(waveform: np.ndarray, max_seconds: float = MAX_SECONDS) -> list[np.ndarray]:
    """Cut a long 16 kHz waveform into consecutive clips of at most `max_seconds`, each a whole
    number of 640-sample tokens except the last (so the clips' frames are exactly the frames of
    the whole). The explicit alternative to load_audio's limit: each clip is its own audio item."""
    x = _check_wave(waveform, "waveform array")
    if max_seconds is None:
        raise MediaError("[audio] split_clips needs a clip length (max_seconds)")
    clip = int(_max_samples(max_seconds)) // SAMPLES_PER_TOKEN * SAMPLES_PER_TOKEN
    if clip < SAMPLES_PER_TOKEN:
        raise MediaError(f"[audio] split_clips: max_seconds {max_seconds} is shorter than one 40 ms token")
    return [x[i:i + clip] for i in range(0, x.shape[0], clip)]


def audio_token_count(n_samples) -> int:
    """Audio soft tokens of a clip of n_samples 16 kHz samples: ceil(n / 640)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 0:
        raise MediaError(f"[audio] audio_token_count: n_samples must be a non-negative integer, got {n_samples!r}")
    return -(-int(n_samples) // SAMPLES_PER_TOKEN)


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------
def _max_samples(max_seconds) -> float:
    if max_seconds is None:
        return math.inf
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float, np.integer, np.floating)):
        raise MediaError(f"[audio] max_seconds must be a number of seconds or None, got {max_seconds!r}")
    if not (math.isfinite(max_seconds) and max_seconds > 0):
        raise MediaError(f"[audio] max_seconds must be positive and finite, got {max_seconds!r}")
    return float(max_seconds) * SAMPLE_RATE


def _check_length(n_out: int, max_samples: float, name: str) -> None:
    if n_out == 0:
        raise MediaError(f"[audio] {name}: no samples (empty audio)")
    if n_out > max_samples:
        raise MediaError(
            f"[audio] {name}: {n_out / SAMPLE_RATE:.2f} s of audio is longer than the {max_samples / SAMPLE_RATE:g} s "
            f"allowed per clip (the model card's limit is {MAX_SECONDS:g} s): load it with max_seconds=None and cut "
            "it with split_clips()")


def _check_rate(rate, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer, float, np.floating)):
        raise MediaError(f"[audio] {name}: sample rate must be a number of Hz, got {rate!r}")
    if not (math.isfinite(rate) and float(rate).is_integer()):
        raise MediaError(f"[audio] {name}: sample rate must be a whole number of Hz, got {rate!r}")
    if not MIN_SOURCE_RATE <= rate <= MAX_SOURCE_RATE:
        raise MediaError(f"[audio] {name}: sample rate {int(rate)} Hz is outside "
                         f"[{MIN_SOURCE_RATE}, {MAX_SOURCE_RATE}] Hz")
    return int(rate)


def _check_wave(x, name: str) -> np.ndarray:
    """A 1-D, non-empty, finite float waveform -> contiguous float32."""
    if not isinstance(x, np.ndarray):
        raise MediaError(f"[audio] {name}: expected a numpy array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        hint = " (integer PCM: divide by 32768 for int16)" if x.dtype.kind in "iu" else ""
        raise MediaError(f"[audio] {name}: samples must be floating point in [-1, 1], got dtype {x.dtype}{hint}")
    if x.ndim != 1:
        raise MediaError(f"[audio] {name}: expected a 1-D mono waveform, got shape {x.shape} "
                         "(mix channels down first, e.g. x.mean(axis=channel_axis))")
    if x.shape[0] == 0:
        raise MediaError(f"[audio] {name}: no samples (empty audio)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise MediaError(f"[audio] {name}: sample {bad} is {x[bad]} (NaN or infinite samples)")
    return x


def _resampled_len(n: int, rate: int) -> int:
    # the expression transformers (and librosa) use, float division included
    return n if rate == SAMPLE_RATE else math.ceil(n * SAMPLE_RATE / rate)


def _resample(x: np.ndarray, rate: int) -> np.ndarray:
    """float32 mono at `rate` -> 16 kHz: soxr "HQ" quality, then padded / trimmed to
    ceil(n * 16000 / rate) samples (soxr may return a few samples fewer or more)."""
    if rate == SAMPLE_RATE:
        return np.ascontiguousarray(x, dtype=np.float32)
    import soxr

    n_out = _resampled_len(x.shape[0], rate)
    y = soxr.resample(x, rate, SAMPLE_RATE, quality="soxr_hq")
    if y.shape[0] < n_out:
        y = np.concatenate([y, np.zeros(n_out - y.shape[0], dtype=y.dtype)])
    return np.ascontiguousarray(y[:n_out], dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
_UNSUPPORTED = [  # (magic test, name) for formats libsndfile cannot decode: a better message
    (lambda h: h[4:8] == b"ftyp", "MP4 / M4A (AAC)"),
    (lambda h: h[:4] == b"\x1a\x45\xdf\xa3", "WebM / Matroska"),
    (lambda h: h[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"), "ASF / WMA"),
    (lambda h: h[:2] in (b"\xff\xf1", b"\xff\xf9"), "AAC (ADTS)"),
    (lambda h: h[:5] == b"#!AMR", "AMR"),
    (lambda h: h[:4] == b"wvpk", "WavPack"),
]


def _sniff_unsupported(head: bytes) -> str | None:
    for test, fmt in _UNSUPPORTED:
        if test(head):
            return fmt
    return None


def _decode(open_src, name: str, max_samples: float, head: bytes) -> np.ndarray:
    import soundfile as sf

    fmt = _sniff_unsupported(head)
    if fmt is not None:
        raise MediaError(f"[audio] {name}: {fmt} is not a supported audio format (supported: WAV, FLAC, OGG "
                         "Vorbis/Opus, MP3, AIFF; convert it first, e.g. ffmpeg -i in.m4a out.flac)")
    try:
        with open_src() as fh, sf.SoundFile(fh) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
            fmt = f"{f.format}/{f.subtype}"
            rate = _check_rate(rate, name)
            if not 1 <= channels <= MAX_CHANNELS:
                raise MediaError(f"[audio] {name}: {channels} channels (1 to {MAX_CHANNELS} supported)")
            # duration from the header, before any sample is decoded
            _check_length(_resampled_len(frames, rate), max_samples, name)
            if frames * channels > MAX_DECODE_SAMPLES:
                raise MediaError(f"[audio] {name}: {frames} frames x {channels} channels is more than "
                                 f"{MAX_DECODE_SAMPLES} samples; split the file before loading it")
            _check_container(fh, f.format, name)
            data = f.read(dtype="float32", always_2d=True)   # (frames, channels)
    except MediaError:
        raise
    except Exception as e:   # LibsndfileError / RuntimeError / OSError / ValueError from libsndfile
        msg = re.sub(r"^Error(?: opening <[^>]*>)?\s*:\s*", "", str(e).strip())   # drop the file object's repr
        raise MediaError(f"[audio] {name}: cannot decode: {msg} (not an audio file, an unsupported "
                         "codec, or a truncated / corrupt file)") from e
    if data.shape[0] == 0:
        raise MediaError(f"[audio] {name}: no samples (empty audio)")
    if data.shape[0] < frames:
        raise MediaError(f"[audio] {name}: truncated or corrupt {fmt}: the header declares {frames} frames, "
                         f"only {data.shape[0]} decode")
    if not np.isfinite(data).all():
        raise MediaError(f"[audio] {name}: holds NaN or infinite samples")
    # channel mean over the (channels, frames) view, as transformers computes it
    wave = data.T.mean(axis=0) if data.shape[1] > 1 else data[:, 0]
    return _resample(wave, rate)


def _check_container(fh, fmt: str, name: str) -> None:
    """Truncation that libsndfile decodes silently: a WAV whose data chunk runs past the end of
    the file, an Ogg stream whose last page is cut or that never reaches its end-of-stream page.
    (FLAC and MP3 truncation shows as a decode error or as fewer frames than the header says.)"""
    pos = fh.tell()
    try:
        fh.seek(0, io.SEEK_END)
        size = fh.tell()
        fh.seek(0)
        if fmt == "WAV":
            _check_wav(fh, size, name)
        elif fmt == "OGG":
            _check_ogg(fh, size, name)
    finally:
        fh.seek(pos)


def _check_wav(fh, size: int, name: str) -> None:
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return   # RIFX / RF64 / WAVEX variants: left to libsndfile
    off = 12
    while off + 8 <= size:
        fh.seek(off)
        cid, csize = struct.unpack("<4sI", fh.read(8))
        if cid == b"data":
            if csize not in (0, 0xFFFFFFFF) and off + 8 + csize > size:
                raise MediaError(f"[audio] {name}: truncated WAV: the data chunk declares {csize} bytes, the file "
                                 f"holds {size - off - 8}")
            return
        off += 8 + csize + (csize & 1)


def _check_ogg(fh, size: int, name: str) -> None:
    off, eos = 0, False
    while off < size:
        fh.seek(off)
        hdr = fh.read(27)
        if len(hdr) < 27 or hdr[:4] != b"OggS":
            raise MediaError(f"[audio] {name}: truncated or corrupt Ogg stream (bad page at byte {off})")
        segs = fh.read(hdr[26])
        end = off + 27 + hdr[26] + sum(segs)
        if len(segs) < hdr[26] or end > size:
            raise MediaError(f"[audio] {name}: truncated Ogg stream (its last page is cut at byte {size})")
        eos = bool(hdr[5] & 0x04)
        off = end
    if not eos:
        raise MediaError(f"[audio] {name}: truncated Ogg stream (no end-of-stream page)")

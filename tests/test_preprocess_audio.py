"""Audio preprocessing (`unigemma.preprocess.audio`) against transformers: clips written with
soundfile in every supported container (WAV PCM16 / PCM24 / float, FLAC, OGG Vorbis / Opus,
MP3) at 8 / 16 / 22.05 / 44.1 / 48 kHz, mono / stereo / 5.1, lengths from 1 sample to several
seconds, must decode and frame bit for bit like
`transformers.audio_utils.load_audio(path, 16000, backend="soundfile")` +
`Gemma4UnifiedAudioFeatureExtractor`; then the 30 s limit, split_clips, and every bad input."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

import unigemma
from unigemma.preprocess import MediaError
from unigemma.preprocess import audio as A

# (name, sample rate, channels, samples, format, subtype)
CLIPS = [
    ("one_sample.wav", 16000, 1, 1, "WAV", "PCM_16"),
    ("t639.wav", 16000, 1, 639, "WAV", "FLOAT"),
    ("t640.flac", 16000, 1, 640, "FLAC", "PCM_16"),
    ("t641_8k.wav", 8000, 1, 641, "WAV", "PCM_16"),
    ("speech_8k.flac", 8000, 1, 8000 * 3 + 17, "FLAC", "PCM_24"),
    ("stereo_22k.wav", 22050, 2, 22050 * 2 + 5, "WAV", "PCM_24"),
    ("stereo_44k.flac", 44100, 2, 44100 * 3, "FLAC", "PCM_16"),
    ("surround_48k.wav", 48000, 6, 48000 + 123, "WAV", "FLOAT"),
    ("stereo_48k.ogg", 48000, 2, 48000 * 2, "OGG", "VORBIS"),
    ("mono_44k.ogg", 44100, 1, 44100 + 441, "OGG", "VORBIS"),
    ("opus_48k.ogg", 48000, 1, 48000, "OGG", "OPUS"),
    ("mono_44k.mp3", 44100, 1, 44100 * 2, "MP3", "MPEG_LAYER_III"),
    ("stereo_48k.mp3", 48000, 2, 48000 + 7, "MP3", "MPEG_LAYER_III"),
    ("long_16k.wav", 16000, 1, 16000 * 6 + 320, "WAV", "PCM_32"),
]


def signal(rate: int, channels: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    ch = [0.4 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.05 * rng.standard_normal(n) for c in range(channels)]
    return np.stack(ch, axis=1).astype(np.float32)   # (frames, channels), as soundfile writes


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    out = {}
    for i, (name, rate, ch, n, fmt, sub) in enumerate(CLIPS):
        if fmt not in sf.available_formats() or sub not in sf.available_subtypes(fmt):
            continue   # an older libsndfile: the clip is skipped, not faked
        sf.write(d / name, signal(rate, ch, n, i), rate, format=fmt, subtype=sub)
        out[name] = d / name
    assert {"t640.flac", "stereo_48k.ogg", "surround_48k.wav"} <= set(out)
    return out


def hf_features(path) -> tuple[np.ndarray, np.ndarray]:
    from transformers import Gemma4UnifiedAudioFeatureExtractor
    from transformers.audio_utils import load_audio

    wave = load_audio(str(path), sampling_rate=16000, backend="soundfile")
    fe = Gemma4UnifiedAudioFeatureExtractor()
    out = fe(wave, return_tensors="np")
    assert out["input_features_mask"].all()
    return wave, out["input_features"][0]


@pytest.mark.parametrize("name", [c[0] for c in CLIPS])
def test_matches_transformers_bit_for_bit(name, clips):
    if name not in clips:
        pytest.skip(f"libsndfile here cannot write {name}")
    path = clips[name]
    ref_wave, ref_frames = hf_features(path)
    wave = A.load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.flags.c_contiguous
    np.testing.assert_array_equal(wave, ref_wave)
    frames = A.audio_frames(wave)
    assert frames.dtype == np.float32 and frames.shape == ref_frames.shape
    np.testing.assert_array_equal(frames, ref_frames)
    assert A.audio_token_count(wave.shape[0]) == frames.shape[0] == -(-wave.shape[0] // 640)
    # the same file as bytes, and as (array, rate) for mono sources, decode the same way
    np.testing.assert_array_equal(A.load_audio(path.read_bytes()), wave)
    with sf.SoundFile(path) as f:
        raw, rate = f.read(dtype="float32", always_2d=True), f.samplerate
    if raw.shape[1] == 1:
        np.testing.assert_array_equal(A.load_audio((raw[:, 0], rate)), wave)


def test_token_counts():
    assert [A.audio_token_count(n) for n in (0, 1, 639, 640, 641, 480000)] == [0, 1, 1, 1, 2, 750]
    assert A.audio_token_count(np.int64(1281)) == 3
    f = A.audio_frames(np.ones(641, np.float32))
    assert f.shape == (2, 640) and f[1, 0] == 1 and not f[1, 1:].any()


def test_30_second_limit_and_split(tmp_path, monkeypatch):
    exact = np.zeros(30 * 16000, np.float32)
    assert A.load_audio(exact).shape == (480000,)
    assert A.audio_frames(exact).shape == (750, 640)
    with pytest.raises(MediaError, match=r"30.00 s of audio is longer than the 30 s allowed .*split_clips"):
        A.load_audio(np.zeros(30 * 16000 + 1, np.float32))
    # a 40 s file is refused from its header, before a sample is decoded
    long = signal(8000, 2, 40 * 8000, 0)
    sf.write(tmp_path / "long.flac", long, 8000)

    def no_read(*a, **k):
        raise AssertionError("decoded although the header says it is too long")

    with monkeypatch.context() as m:
        m.setattr(sf.SoundFile, "read", no_read)
        with pytest.raises(MediaError, match=r"'.*long.flac': 40.00 s of audio is longer than the 30 s"):
            A.load_audio(tmp_path / "long.flac")
    with pytest.raises(MediaError, match="longer than the 10 s allowed"):
        A.load_audio(tmp_path / "long.flac", max_seconds=10)
    wave = A.load_audio(tmp_path / "long.flac", max_seconds=None)
    assert wave.shape == (640000,)
    parts = A.split_clips(wave)
    assert [p.shape[0] for p in parts] == [480000, 160000]
    np.testing.assert_array_equal(np.concatenate([A.audio_frames(p) for p in parts]), A.audio_frames(wave))
    odd = A.split_clips(wave[:100001], max_seconds=1.01)   # 16160 -> 16000 samples (25 tokens) per clip
    assert {p.shape[0] for p in odd[:-1]} == {16000} and sum(p.shape[0] for p in odd) == 100001
    np.testing.assert_array_equal(np.concatenate([A.audio_frames(p) for p in odd]), A.audio_frames(wave[:100001]))
    with pytest.raises(MediaError, match="shorter than one 40 ms token"):
        A.split_clips(wave, max_seconds=0.01)


def _bytes_of(x, rate, fmt, sub=None):
    b = io.BytesIO()
    sf.write(b, x, rate, format=fmt, subtype=sub)
    return b.getvalue()


def _bad_inputs(clips, tmp_path):
    x = signal(16000, 1, 16000, 1)[:, 0]
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "dir.wav").mkdir()
    nan_wav = x.copy()
    nan_wav[100] = np.nan
    wav = _bytes_of(x, 16000, "WAV", "PCM_16")
    flac = clips["stereo_44k.flac"].read_bytes()
    corrupt_flac = bytearray(flac)
    corrupt_flac[len(flac) // 2:len(flac) // 2 + 64] = bytes(64)
    return [
        # files and bytes
        (tmp_path / "missing.wav", "no such file"),
        (tmp_path / "dir.wav", "not a regular file"),
        (tmp_path / "empty.wav", "cannot decode"),
        (b"", "cannot decode"),
        (b"hello, this is not audio " * 40, "cannot decode"),
        (b"\x89PNG\r\n\x1a\n" + bytes(500), "cannot decode"),
        (b"\x00\x00\x00\x20ftypM4A " + bytes(500), "MP4 / M4A (AAC) is not a supported audio format"),
        (b"\x1a\x45\xdf\xa3" + bytes(500), "WebM / Matroska is not a supported"),
        (wav[:len(wav) // 2], "truncated WAV"),
        (wav[:30], "cannot decode"),
        (flac[:len(flac) // 2], "cannot decode: flac decoder lost sync"),
        (bytes(corrupt_flac), "cannot decode"),
        (clips["stereo_48k.ogg"].read_bytes()[:-100], "truncated Ogg stream"),
        (clips["stereo_48k.ogg"].read_bytes() + b"junk", "truncated or corrupt Ogg stream"),
        (_bytes_of(np.zeros((0, 1), np.float32), 16000, "WAV", "PCM_16"), "no samples"),
        (_bytes_of(nan_wav, 16000, "WAV", "FLOAT"), "NaN or infinite"),
        (_bytes_of(x, 100, "WAV", "PCM_16"), "sample rate 100 Hz is outside"),
        # arrays
        (np.array([], np.float32), "no samples"),
        (nan_wav, "sample 100 is nan"),
        (np.full(10, np.inf, np.float32), "sample 0 is inf"),
        ((x * 32767).astype(np.int16), "must be floating point in [-1, 1], got dtype int16 (integer PCM"),
        (np.stack([x, x]), "expected a 1-D mono waveform, got shape (2, 16000)"),
        (np.array(["a", "b"]), "must be floating point"),
        ((x, 0), "sample rate 0 Hz is outside"),
        ((x, 10**9), "is outside"),
        ((x, 44100.5), "whole number of Hz"),
        ((x, "16k"), "sample rate must be a number"),
        ((x, float("nan")), "whole number of Hz"),
        ((x,), "must be (waveform, sample_rate)"),
        ((x.astype(np.int32), 16000), "got dtype int32"),
        (5, "unsupported source type int"),
        ([0.0, 0.1], "unsupported source type list"),
    ]


def test_bad_inputs_raise_media_error(clips, tmp_path):
    for src, msg in _bad_inputs(clips, tmp_path):
        with pytest.raises(MediaError) as e:
            A.load_audio(src)
        assert isinstance(e.value, unigemma.InputError)
        assert str(e.value).startswith("[audio] ") and msg in str(e.value), (msg, str(e.value))
        if isinstance(src, type(tmp_path)):
            assert str(src) in str(e.value)   # the message names the file
    for bad in (0, -1, float("nan"), float("inf"), "30", True):
        with pytest.raises(MediaError, match="max_seconds"):
            A.load_audio(np.zeros(10, np.float32), max_seconds=bad)
    for bad in (-1, 1.5, "3", None):
        with pytest.raises(MediaError, match="audio_token_count"):
            A.audio_token_count(bad)
    for bad in (np.zeros(0, np.float32), np.zeros((2, 2), np.float32), [0.1]):
        with pytest.raises(MediaError):
            A.audio_frames(bad)
        with pytest.raises(MediaError):
            A.split_clips(bad)

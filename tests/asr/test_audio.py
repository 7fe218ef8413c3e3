"""WAV decoding of untrusted bytes: what is accepted, and the 4xx reason for everything else."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from services.asr.audio import AudioError, decode_wav, encode_wav, load_audio


def tone(rate: int, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.mark.parametrize("rate", [8_000, 11_025, 16_000, 22_050, 44_100, 48_000])
@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT", "DOUBLE"])
def test_accepts_rates_and_sample_formats(rate, subtype):
    x, r = decode_wav(encode_wav(tone(rate), rate, subtype))
    assert r == rate and x.dtype == np.float32 and abs(len(x) - rate // 2) <= 1
    assert abs(np.abs(x).max() - 0.5) < 1e-3
    y = load_audio(encode_wav(tone(rate), rate, subtype))
    assert abs(len(y) - 8_000) <= 1


def test_stereo_is_mixed_to_mono():
    st = tone(16_000, channels=2)
    st[:, 1] = 0
    x, _ = decode_wav(encode_wav(st, 16_000))
    assert abs(np.abs(x).max() - 0.25) < 1e-3


def wav_header_only(rate=16_000, bits=16, fmt=1) -> bytes:
    """A valid RIFF/WAVE header with a zero-length data chunk."""
    block = bits // 8
    fmt_chunk = struct.pack("<HHIIHH", fmt, 1, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", 0)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("data,status,needle", [
    (b"", 422, "empty body"),
    (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), 422, "not a WAV"),
    (b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", 422, "WAV"),
    (wav_header_only(), 422, "no samples"),
    (encode_wav(tone(16_000), 16_000, "PCM_U8"), 422, "8"),
    (encode_wav(tone(16_000), 16_000, "PCM_24"), 422, "24"),
    (encode_wav(tone(96_000, 0.1), 96_000), 422, "96000 Hz"),
    (encode_wav(np.zeros((800, 3)), 16_000), 422, "3 channels"),
    (encode_wav(tone(8_000, 31.0), 8_000), 422, "limit is 30 s"),
])
def test_rejections_name_the_problem(data, status, needle):
    with pytest.raises(AudioError) as exc:
        decode_wav(data, max_seconds=30)
    assert exc.value.status_code == status and needle in exc.value.message, exc.value.message


def test_nan_samples_are_refused():
    buf = io.BytesIO()
    sf.write(buf, np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), 16_000, format="WAV", subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        decode_wav(buf.getvalue())

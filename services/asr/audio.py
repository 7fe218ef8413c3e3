"""WAV in and out, and resampling to the model's 16 kHz.

``decode_wav`` is what the endpoint runs on untrusted bytes: anything it cannot turn into
8-48 kHz, mono or stereo, 16-bit PCM or float audio raises ``AudioError`` with a message and
the HTTP status that fits (415 not audio, 422 unsupported or empty, 413 too long).
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
import soundfile as sf
from scipy.signal import firwin, resample_poly

SAMPLE_RATE = 16_000
MIN_RATE, MAX_RATE = 8_000, 48_000
ACCEPTED_SUBTYPES = {"PCM_16": "16-bit PCM", "FLOAT": "32-bit float", "DOUBLE": "64-bit float"}


class AudioError(ValueError):
    """Audio the service cannot use; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, message: str, status_code: int = 422, reason: str = "format"):
        super().__init__(message)
        self.message, self.status_code, self.reason = message, status_code, reason


def decode_wav(data: bytes, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """WAV bytes -> (mono float32 samples in [-1, 1], sample rate), validated."""
    if not data:
        raise AudioError("empty body: send a WAV file (16-bit PCM or float, 8-48 kHz, mono or stereo)",
                         reason="empty")
    if data[:4] not in (b"RIFF", b"RIFX", b"RF64") or data[8:12] != b"WAVE":
        raise AudioError("the body is not a WAV file (no RIFF/WAVE header); send 16-bit PCM or float WAV audio",
                         reason="not_wav")
    try:
        info = sf.info(io.BytesIO(data))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f"unreadable WAV file: {exc}", reason="not_wav") from None
    if info.subtype not in ACCEPTED_SUBTYPES:
        raise AudioError(f"unsupported sample format {info.subtype_info or info.subtype!r}: "
                         f"send {', '.join(ACCEPTED_SUBTYPES.values())} samples")
    if info.channels not in (1, 2):
        raise AudioError(f"{info.channels} channels: send mono or stereo audio")
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise AudioError(f"sample rate {info.samplerate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    if info.frames <= 0:
        raise AudioError("the WAV file holds no samples", reason="empty")
    seconds = info.frames / info.samplerate
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(f"audio is {seconds:.1f} s long; the limit is {max_seconds:g} s", reason="too_long")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f"unreadable WAV data: {exc}") from None
    if samples.shape[0] == 0:
        raise AudioError("the WAV file holds no samples", reason="empty")
    mono = samples.mean(axis=1)  # (N,)
    if not np.isfinite(mono).all():
        raise AudioError("the WAV file holds NaN or infinite samples")
    return np.clip(mono, -1.0, 1.0).astype(np.float32), int(rate)


@functools.cache
def _lowpass(up: int, down: int) -> np.ndarray:
    """scipy's own resample_poly filter (Kaiser β=5, 10 zero crossings per side), designed once per ratio."""
    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resample(x: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (Kaiser-windowed FIR anti-aliasing) by the reduced ratio rate_out/rate_in."""
    if rate_in == rate_out:
        return x.astype(np.float32, copy=False)
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    return resample_poly(x, up, down, window=_lowpass(up, down)).astype(np.float32)


def load_audio(data: bytes, max_seconds: float | None = None) -> np.ndarray:
    """WAV bytes -> 16 kHz mono float32, validated."""
    x, rate = decode_wav(data, max_seconds)
    return resample(x, rate, SAMPLE_RATE)


def encode_wav(x: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> bytes:
    """Samples (N,) or (N, C) in [-1, 1] -> WAV bytes."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x), rate, format="WAV", subtype=subtype)
    return buf.getvalue()

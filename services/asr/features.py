"""Audio -> log-mel features, and the training-time augmentations that act on them.

    waveform (N,) ──STFT (Hann 25 ms, hop 10 ms, 512-point FFT)──► |X|² (257, T)
        ──mel filterbank (80 bands, Slaney scale, as librosa)──► log(· + 1e-6) (T, 80)
        ──per-utterance mean/variance normalisation──► model input

Augmentations on log-mel (training only): vocal-tract-length perturbation (a warp of the
frequency axis), speed perturbation (a warp of the time axis), a random smooth channel
(equaliser) curve, and SpecAugment (frequency and time masks).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16_000
N_FFT = 512
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
N_MELS = 80
F_MIN, F_MAX = 0.0, 8_000.0
LOG_FLOOR = 1e-6


# --- mel scale (Slaney's auditory toolbox, librosa's default) ---------------------------------
def hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    lin = f / f_sp
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, lin)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.cache
def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sr: int = SAMPLE_RATE,
                   fmin: float = F_MIN, fmax: float = F_MAX) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) triangular filters, area-normalised (librosa ``norm='slaney'``)."""
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_pts = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_pts)
    ramps = mel_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_pts[2:] - mel_pts[:-2]))[:, None]
    return weights.astype(np.float32)


# --- features ----------------------------------------------------------------------------------
def power_spectrogram(wave: torch.Tensor) -> torch.Tensor:
    """(N,) or (B, N) float waveform -> (..., 257, T) power spectrogram, T = N // 160 + 1."""
    window = torch.hann_window(WIN_LENGTH, periodic=True, dtype=wave.dtype, device=wave.device)
    spec = torch.stft(wave, N_FFT, HOP_LENGTH, WIN_LENGTH, window=window, center=True, pad_mode="constant",
                      return_complex=True)
    return spec.real.square() + spec.imag.square()


def log_mel(wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N,) waveform at 16 kHz -> (T, 80) log-mel features (float32)."""
    if isinstance(wave, np.ndarray):
        wave = np.asarray(wave, dtype=np.float32)
        if not wave.flags.writeable:  # e.g. read from Ray's object store: torch warns on read-only arrays
            wave = wave.copy()
    x = torch.as_tensor(wave).float()
    mel = torch.from_numpy(mel_filterbank()).to(x.device)
    power = power_spectrogram(x)  # (257, T)
    return torch.log(mel @ power + LOG_FLOOR).transpose(-1, -2).contiguous()  # (T, 80)


def normalize(feats: torch.Tensor, lengths: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance, per-band mean/variance normalisation; padded frames (beyond lengths) become 0.

    feats: (T, F) or (B, T, F); lengths: (B,) valid frames per utterance.
    """
    if feats.dim() == 2:
        mu, sd = feats.mean(0, keepdim=True), feats.std(0, keepdim=True, unbiased=False)
        return (feats - mu) / (sd + eps)
    B, T, _ = feats.shape
    if lengths is None:
        lengths = torch.full((B,), T, device=feats.device)
    mask = (torch.arange(T, device=feats.device)[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
    n = lengths.clamp(min=1).view(B, 1, 1).to(feats.dtype)
    mu = (feats * mask).sum(1, keepdim=True) / n  # (B, 1, F)
    var = (((feats - mu) * mask) ** 2).sum(1, keepdim=True) / n
    return ((feats - mu) / (var.sqrt() + eps)) * mask


# --- augmentation (training only) -------------------------------------------------------------
def warp_frequency(feats: torch.Tensor, alpha: float, boundary: float = 0.85) -> torch.Tensor:
    """Vocal-tract-length perturbation on (T, F) log-mel: band f reads band f/alpha below the boundary,
    a linear segment maps the rest so that the top band stays in place."""
    n = feats.shape[-1]
    f = torch.arange(n, dtype=torch.float64)
    knee = boundary * (n - 1) * min(alpha, 1.0)
    src = torch.where(f <= knee, f / alpha, knee / alpha + (f - knee) * ((n - 1) - knee / alpha) / ((n - 1) - knee))
    src = src.clamp(0, n - 1)
    lo = src.floor().long().clamp(max=n - 2)
    w = (src - lo).to(feats.dtype)
    return feats[..., lo] * (1 - w) + feats[..., lo + 1] * w


def warp_time(feats: torch.Tensor, rate: float) -> torch.Tensor:
    """Speed perturbation on (T, F): ``rate`` > 1 makes speech faster (fewer frames)."""
    T = feats.shape[0]
    new_t = max(2, int(round(T / rate)))
    return F.interpolate(feats.T.unsqueeze(0), size=new_t, mode="linear", align_corners=True)[0].T.contiguous()


def random_channel(n_bands: int, rng: np.random.Generator, max_db: float = 6.0) -> torch.Tensor:
    """A smooth random equaliser curve (F,) in natural-log units: a tilt plus a few low-order cosines."""
    x = np.linspace(0, 1, n_bands)
    curve = rng.uniform(-1, 1) * (x - 0.5)
    for k in range(1, 4):
        curve = curve + rng.uniform(-0.5, 0.5) / k * np.cos(np.pi * k * x + rng.uniform(0, np.pi))
    return torch.from_numpy((curve * max_db / 10 * np.log(10)).astype(np.float32))


def spec_augment(feats: torch.Tensor, rng: np.random.Generator, freq_masks: int = 2, freq_width: int = 10,
                 time_masks: int = 1, time_ratio: float = 0.05) -> torch.Tensor:
    """SpecAugment on normalised (T, F) features: masked regions are set to the mean (0)."""
    out = feats.clone()
    T, n = out.shape
    for _ in range(freq_masks):
        w = int(rng.integers(0, freq_width + 1))
        f0 = int(rng.integers(0, max(1, n - w)))
        out[:, f0:f0 + w] = 0
    for _ in range(time_masks):
        w = int(rng.integers(0, max(1, int(time_ratio * T)) + 1))
        t0 = int(rng.integers(0, max(1, T - w)))
        out[t0:t0 + w, :] = 0
    return out

"""Log-mel features against an independent numpy implementation and librosa; augmentations; resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.asr import features as F
from services.asr.audio import resample


def numpy_log_mel(x: np.ndarray) -> np.ndarray:
    """Textbook framing: zero-pad n_fft/2 each side, Hann(400) centred in 512, |rfft|², mel, log."""
    pad = np.pad(x.astype(np.float64), F.N_FFT // 2)
    n_frames = 1 + (len(pad) - F.N_FFT) // F.HOP_LENGTH
    win = np.zeros(F.N_FFT)
    off = (F.N_FFT - F.WIN_LENGTH) // 2
    win[off:off + F.WIN_LENGTH] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(F.WIN_LENGTH) / F.WIN_LENGTH)
    frames = np.stack([pad[i * F.HOP_LENGTH:i * F.HOP_LENGTH + F.N_FFT] * win for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (T, 257)
    return np.log(power @ F.mel_filterbank().T.astype(np.float64) + F.LOG_FLOOR)


def test_log_mel_matches_numpy_reference():
    x = np.random.default_rng(0).standard_normal(16_000 + 123).astype(np.float32) * 0.1
    ours = F.log_mel(x).numpy()
    ref = numpy_log_mel(x)
    assert ours.shape == ref.shape == (len(x) // F.HOP_LENGTH + 1, 80)
    assert np.abs(ours - ref).max() < 1e-3


def test_log_mel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    t = np.arange(24_000) / 16_000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(1).standard_normal(len(t))).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=x, sr=16_000, n_fft=512, hop_length=160, win_length=400, window="hann",
                                         center=True, pad_mode="constant", power=2.0, n_mels=80, fmin=0, fmax=8000)
    assert np.abs(F.log_mel(x).numpy() - np.log(mel.T + F.LOG_FLOOR)).max() < 1e-3
    fb = librosa.filters.mel(sr=16_000, n_fft=512, n_mels=80, fmin=0, fmax=8000)
    assert np.abs(F.mel_filterbank() - fb).max() < 1e-6


def test_mel_scale_round_trip_and_a_tone_lands_in_the_right_band():
    f = np.array([0, 100, 500, 1000, 2500, 8000.0])
    assert np.allclose(F.mel_to_hz(F.hz_to_mel(f)), f)
    t = np.arange(16_000) / 16_000
    feats = F.log_mel(np.sin(2 * np.pi * 1000 * t).astype(np.float32)).numpy()
    band = int(feats[10:-10].mean(0).argmax())
    centres = F.mel_to_hz(np.linspace(F.hz_to_mel(0), F.hz_to_mel(8000), 82))[1:-1]
    assert abs(centres[band] - 1000) < 60


def test_normalize_per_utterance_and_padding():
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.standard_normal((50, 80)) * 3 + 7, dtype=torch.float32)
    b = torch.tensor(rng.standard_normal((30, 80)) - 2, dtype=torch.float32)
    batch = torch.zeros(2, 50, 80)
    batch[0], batch[1, :30] = a, b
    out = F.normalize(batch, torch.tensor([50, 30]))
    assert torch.allclose(out[1, :30].mean(0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(out[1, :30].std(0, unbiased=False), torch.ones(80), atol=1e-3)
    assert out[1, 30:].abs().max() == 0
    assert torch.allclose(out[0], F.normalize(a), atol=1e-5)


def test_augmentations():
    rng = np.random.default_rng(0)
    f = torch.randn(100, 80)
    assert torch.equal(F.warp_frequency(f, 1.0), f)
    w = F.warp_frequency(f, 1.2)
    assert w.shape == f.shape and not torch.equal(w, f) and torch.allclose(w[:, -1], f[:, -1], atol=1e-5)
    assert F.warp_time(f, 1.25).shape == (80, 80) and F.warp_time(f, 0.8).shape == (125, 80)
    masked = F.spec_augment(f, rng, freq_masks=1, freq_width=10, time_masks=0)
    assert ((masked == 0).all(0)).sum() <= 10
    assert F.random_channel(80, rng).shape == (80,)


def test_training_augmentation_switches():
    """--no-augment: features are only normalised; --no-spec-augment: no masked (all-zero) bands."""
    from services.asr.train import TrainArgs, augment

    f = torch.randn(200, 80) * 3 + 1
    plain = augment(f, TrainArgs(augment=False), np.random.default_rng(0))
    assert torch.allclose(plain, F.normalize(f))
    no_masks = augment(f, TrainArgs(spec_augment=False, vtlp=0.0, speed=0.0), np.random.default_rng(0))
    assert no_masks.shape == f.shape and not (no_masks == 0).all(0).any()
    masked = augment(f, TrainArgs(vtlp=0.0, speed=0.0), np.random.default_rng(0))
    assert (masked == 0).all(0).any() or (masked == 0).all(1).any()


def test_resampling_keeps_a_tone():
    for rate in (8_000, 22_050, 44_100, 48_000):
        t = np.arange(rate) / rate
        y = resample(np.sin(2 * np.pi * 1000 * t).astype(np.float32), rate, 16_000)
        assert abs(len(y) - 16_000) <= 1
        spec = np.abs(np.fft.rfft(y[1000:-1000]))
        peak_hz = spec.argmax() * 16_000 / len(y[1000:-1000])
        assert abs(peak_hz - 1000) < 2
        assert abs(np.sqrt(np.mean(y[1000:-1000] ** 2)) - np.sqrt(0.5)) < 0.01


def test_mixing_a_talker_under_the_features_adds_powers_as_mixing_the_waveforms_does():
    """--mix-speech mixes another utterance's log-mel under one's own in the power domain: the same, up to the
    cross terms, as mixing the waveforms at that power ratio and taking the log-mel of the sum."""
    from services.asr.train import mix_talker

    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    x = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32)  # a chirp
    y = rng.standard_normal(16_000).astype(np.float32)
    fx, fy = F.log_mel(x), F.log_mel(y)
    snr = 10.0
    mixed = mix_talker(fx, fy, snr, np.random.default_rng(1))
    gain = float((fx.exp().mean() / fy.exp().mean() / 10 ** (snr / 10)).sqrt())
    reference = F.log_mel(x + gain * y)
    assert (mixed - reference).abs().mean() < 0.1
    assert (fx - reference).abs().mean() > 1.0  # the interferer matters at 10 dB
    added = mixed.exp() - fx.exp()
    assert 10 * np.log10(float(fx.exp().mean() / added.mean())) == pytest.approx(snr, abs=1e-3)
    assert mix_talker(fx, fy[:7], snr, rng).shape == fx.shape  # a short interferer is tiled

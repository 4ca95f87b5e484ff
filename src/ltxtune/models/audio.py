"""Waveform -> log-mel spectrogram, the input of the LTX-2 audio VAE.

diffusers has no LTX-2 audio *encoding* path in `LTX2Pipeline` (it only decodes). The convention
here mirrors diffusers' own LTX-2-VAE audio encoder front end,
`diffusers/modular_pipelines/echo/encoders.py::_encode_audio` (torchaudio
`MelSpectrogram(n_fft=1024, win_length=1024, hop_length=audio_vae.config.mel_hop_length, f_min=0,
f_max=sr/2, n_mels=audio_vae.config.mel_bins, hann window, center=True, pad_mode="reflect",
power=1.0, mel_scale="slaney", norm="slaney")`, then `log(clamp(mel, min=1e-5))`, laid out as
`(batch, channels, time, mel_bins)`, mono duplicated to stereo). torchaudio has no build matching
the CPU torch here, so the STFT and the Slaney filterbank are written with plain torch.
"""

from __future__ import annotations

import math

import torch


def _hz_to_mel_slaney(freq: torch.Tensor) -> torch.Tensor:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    mel = freq / f_sp
    return torch.where(freq >= min_log_hz, min_log_mel + torch.log(freq / min_log_hz) / logstep, mel)


def _mel_to_hz_slaney(mel: torch.Tensor) -> torch.Tensor:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return torch.where(mel >= min_log_mel, min_log_hz * torch.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(
    *, sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised triangular filterbank, shape (n_mels, n_fft // 2 + 1), float64.

    Same filters as torchaudio `melscale_fbanks(..., norm="slaney", mel_scale="slaney")` and
    librosa `filters.mel(htk=False)`.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    n_freqs = n_fft // 2 + 1
    all_freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    m_min, m_max = _hz_to_mel_slaney(torch.tensor(float(f_min), dtype=torch.float64)), _hz_to_mel_slaney(
        torch.tensor(float(f_max), dtype=torch.float64)
    )
    f_pts = _mel_to_hz_slaney(torch.linspace(float(m_min), float(m_max), n_mels + 2, dtype=torch.float64))
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.clamp(torch.minimum(down, up), min=0.0)  # (n_freqs, n_mels)
    enorm = 2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels])
    return (fb * enorm.unsqueeze(0)).T.contiguous()


def as_stereo(waveform: torch.Tensor) -> torch.Tensor:
    """(samples,) | (channels, samples) | (batch, channels, samples) -> (batch, 2, samples) float32.

    Mono is duplicated, extra channels are dropped (diffusers echo `_normalize_waveform` does the same).
    """
    w = torch.as_tensor(waveform).float()
    if w.ndim == 1:
        w = w[None, None]
    elif w.ndim == 2:
        w = w[None]
    if w.ndim != 3:
        raise ValueError(
            f"waveform must be (samples,), (channels, samples) or (batch, channels, samples), got {tuple(w.shape)}"
        )
    if w.shape[1] == 1:
        w = w.repeat(1, 2, 1)
    return w[:, :2].contiguous()


def log_mel_spectrogram(
    waveform: torch.Tensor,
    *,
    sample_rate: int,
    expected_sample_rate: int,
    n_mels: int,
    hop_length: int,
    n_fft: int = 1024,
) -> torch.Tensor:
    """Log-mel spectrogram of a waveform, shaped (batch, 2, frames, n_mels), frames = samples // hop + 1.

    `waveform` is float in [-1, 1] at `sample_rate`; resample to `expected_sample_rate` (the audio VAE's
    `config.sample_rate`, 16 kHz for LTX-2) before calling (ltxtune's data layer does it with PyAV).
    """
    if sample_rate != expected_sample_rate:
        raise ValueError(
            f"audio is {sample_rate} Hz but the audio VAE expects {expected_sample_rate} Hz; resample it first"
        )
    w = as_stereo(waveform)
    batch, channels, samples = w.shape
    flat = w.reshape(batch * channels, samples)
    if samples <= n_fft // 2:  # reflect padding needs more samples than the pad width
        flat = torch.nn.functional.pad(flat, (0, n_fft // 2 + 1 - samples))
    window = torch.hann_window(n_fft, dtype=torch.float32, device=flat.device)
    spec = torch.stft(
        flat, n_fft=n_fft, hop_length=hop_length, win_length=n_fft, window=window,
        center=True, pad_mode="reflect", return_complex=True,
    ).abs()  # power=1.0: magnitude
    fb = mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels).to(spec)
    mel = torch.matmul(fb, spec)  # (B*C, n_mels, frames)
    log_mel = torch.log(torch.clamp(mel, min=1e-5))
    frames = samples // hop_length + 1
    log_mel = log_mel[..., :frames]
    return log_mel.reshape(batch, channels, n_mels, -1).transpose(2, 3).contiguous()

"""Audio: the window of a clip's soundtrack that matches its kept frames, fitted to the trained
duration, resampled to the model family's audio encoder rate (stereo), peak-normalised.

The window starts at the same source time as the first kept frame and covers the same source
span as the frames (`video.py`), so sound stays in sync with the picture. When the frames were
slowed down (`auto_scale_input` on a short clip), the span is shorter than the trained duration:
with `audio_preserve_pitch` the sound is time-stretched by a phase vocoder (same pitch, same
sync), otherwise it is played at its own speed and padded with silence. Stored as 16-bit PCM WAV.
"""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

from ltxtune.data.probe import MediaInfo, why

PEAK = 10 ** (-1 / 20)  # -1 dBFS after normalisation
N_FFT = 1024
HOP = 256


class AudioError(Exception):
    """The soundtrack cannot be decoded; the message is the reason shown to the user."""


def decode_window(path: Path, info: MediaInfo, start: float, span: float, rate: int) -> np.ndarray:
    """Stereo float32 samples (2, round(span * rate)) of the source from `start` seconds after the
    first video frame; parts without sound are silent."""
    count = int(round(span * rate))
    out = np.zeros((2, count), np.float32)
    begin = info.start + start  # absolute presentation time of the window
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise AudioError(f"the audio cannot be opened ({why(error)})") from error
    with container:
        stream = next((s for s in container.streams.audio if s.codec_context.sample_rate), None)
        if stream is None:
            return out
        if begin > 1.0:
            container.seek(int((begin - 1.0) / stream.time_base), stream=stream, backward=True)
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        origin: float | None = None
        position = 0  # resampled samples produced since `origin`
        failure: av.FFmpegError | None = None
        try:
            for frame in container.decode(stream):
                if origin is None:
                    origin = float(frame.time) if frame.time is not None else 0.0
                for chunk in resampler.resample(frame):
                    position = _place(out, chunk.to_ndarray(), position, origin, begin, rate)
                if origin + position / rate >= begin + span:
                    return out
        except av.FFmpegError as error:
            failure = error
        for chunk in resampler.resample(None):
            position = _place(out, chunk.to_ndarray(), position, 0.0 if origin is None else origin, begin, rate)
    reached = (0.0 if origin is None else origin) + position / rate - info.start
    if failure is not None and reached < start + span - 0.05:
        raise AudioError(
            f"decoding the audio failed at {reached:.2f} s but sound up to {start + span:.2f} s is needed "
            f"(the file looks truncated or corrupt: {why(failure)})"
        )
    return out


def _place(out: np.ndarray, chunk: np.ndarray, position: int, origin: float, begin: float, rate: int) -> int:
    """Copy `chunk` (starting `position` samples after `origin`) into the window `out`."""
    offset = position - int(round((begin - origin) * rate))  # index of chunk[0] within the window
    lo, hi = max(0, offset), min(out.shape[1], offset + chunk.shape[1])
    if hi > lo:
        out[:, lo:hi] = chunk[:2, lo - offset : hi - offset]
    return position + chunk.shape[1]


def fit_audio(samples: np.ndarray, count: int, *, preserve_pitch: bool, normalize: bool) -> np.ndarray:
    """`samples` made exactly `count` long: stretched (pitch kept) or trimmed/padded with silence."""
    if samples.shape[1] == count:
        fitted = samples
    elif preserve_pitch and samples.shape[1] > 0:
        fitted = np.stack([time_stretch(channel, count) for channel in samples])
    else:
        fitted = np.zeros((samples.shape[0], count), np.float32)
        keep = min(count, samples.shape[1])
        fitted[:, :keep] = samples[:, :keep]
    if normalize:
        fitted = peak_normalize(fitted)
    return np.clip(fitted, -1.0, 1.0).astype(np.float32)


def peak_normalize(samples: np.ndarray, peak: float = PEAK) -> np.ndarray:
    top = float(np.max(np.abs(samples))) if samples.size else 0.0
    if top < 1e-6:
        return samples
    return samples * (peak / top)


def time_stretch(signal: np.ndarray, count: int) -> np.ndarray:
    """`signal` (1-D) stretched or compressed in time to `count` samples without changing pitch
    (phase vocoder, Hann window, 1024-point frames, hop 256)."""
    if count <= 0:
        return np.zeros(0, np.float32)
    speed = len(signal) / count
    padded = np.pad(signal.astype(np.float64), (0, max(0, N_FFT - len(signal))))
    spectrum = _stft(padded)
    stretched = _phase_vocoder(spectrum, speed)
    return _istft(stretched, count).astype(np.float32)


_WINDOW = np.hanning(N_FFT + 1)[:-1]


def _stft(signal: np.ndarray) -> np.ndarray:
    half = N_FFT // 2
    signal = np.pad(signal, (half, half + HOP))
    frames = 1 + (len(signal) - N_FFT) // HOP
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    return np.fft.rfft(signal[index] * _WINDOW, axis=1).T  # (bins, frames)


def _phase_vocoder(spectrum: np.ndarray, speed: float) -> np.ndarray:
    bins, frames = spectrum.shape
    steps = np.arange(0, frames, speed)
    spectrum = np.pad(spectrum, ((0, 0), (0, 2)))
    advance = np.linspace(0, np.pi * HOP, bins)
    phase = np.angle(spectrum[:, 0])
    out = np.empty((bins, len(steps)), np.complex128)
    for t, step in enumerate(steps):
        left, right = spectrum[:, int(step)], spectrum[:, int(step) + 1]
        alpha = step - int(step)
        magnitude = (1 - alpha) * np.abs(left) + alpha * np.abs(right)
        out[:, t] = magnitude * np.exp(1j * phase)
        delta = np.angle(right) - np.angle(left) - advance
        delta -= 2 * np.pi * np.round(delta / (2 * np.pi))
        phase = phase + advance + delta
    return out


def _istft(spectrum: np.ndarray, length: int) -> np.ndarray:
    frames = spectrum.shape[1]
    chunks = np.fft.irfft(spectrum.T, n=N_FFT, axis=1) * _WINDOW
    total = N_FFT + HOP * (frames - 1)
    signal = np.zeros(total)
    weight = np.zeros(total)
    for t in range(frames):
        signal[t * HOP : t * HOP + N_FFT] += chunks[t]
        weight[t * HOP : t * HOP + N_FFT] += _WINDOW**2
    signal /= np.where(weight > 1e-3, weight, 1.0)
    signal = signal[N_FFT // 2 :]
    if len(signal) < length:
        signal = np.pad(signal, (0, length - len(signal)))
    return signal[:length]


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """(channels, n) float samples in [-1, 1] as 16-bit PCM."""
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(samples.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(pcm.T).tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A prepared WAV as float32 (channels, n) in [-1, 1], and its sample rate (for the trainer)."""
    with wave.open(str(path), "rb") as source:
        channels, rate = source.getnchannels(), source.getframerate()
        data = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
    return (data.reshape(-1, channels).T.astype(np.float32) / 32767), rate

import numpy as np

from ltxtune.data.audio import PEAK, fit_audio, peak_normalize, read_wav, time_stretch, write_wav
from tests.data.media import dominant_hz

RATE = 16000


def sine(seconds: float, hz: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    wave = (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.stack([wave, wave])


def test_time_stretch_keeps_pitch_and_length():
    source = sine(0.5)[0]
    stretched = time_stretch(source, 12000)  # 0.5 s -> 0.75 s
    assert stretched.shape == (12000,)
    assert abs(dominant_hz(stretched[2000:10000], RATE) - 440) < 5
    # the sound fills the whole duration (no silent tail)
    assert np.abs(stretched[-2000:-500]).max() > 0.2
    squeezed = time_stretch(source, 4000)
    assert squeezed.shape == (4000,) and abs(dominant_hz(squeezed, RATE) - 440) < 8


def test_fit_audio_trim_pad_and_normalise():
    source = sine(0.5)
    padded = fit_audio(source, 12000, preserve_pitch=False, normalize=False)
    assert padded.shape == (2, 12000)
    assert np.array_equal(padded[:, :8000], source)
    assert not padded[:, 8000:].any()
    trimmed = fit_audio(source, 4000, preserve_pitch=False, normalize=True)
    assert trimmed.shape == (2, 4000)
    assert np.isclose(np.abs(trimmed).max(), PEAK, atol=1e-4)
    same = fit_audio(source, 8000, preserve_pitch=True, normalize=False)
    assert np.array_equal(same, source)


def test_silence_is_not_amplified():
    silent = np.zeros((2, 100), np.float32)
    assert not peak_normalize(silent).any()


def test_wav_round_trip(tmp_path):
    samples = sine(0.1)
    write_wav(tmp_path / "a.wav", samples, RATE)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == RATE and back.shape == (2, 1600)
    assert np.abs(back - samples).max() < 1e-4

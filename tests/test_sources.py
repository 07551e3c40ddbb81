"""WavSource: every common PCM layout in, 16 kHz mono int16 out; clear errors for what is not audio."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxrelay.edge.capture.files import FILE_BLOCK_SECONDS, LIVE_BLOCK_SECONDS, WavSource
from voxrelay.edge.events import AudioBlock
from voxrelay.errors import AudioError, InvalidArgument

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech"


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def read_all(source: WavSource) -> tuple[np.ndarray, list[AudioBlock]]:
    blocks = list(source.blocks())
    return np.concatenate([b.samples for b in blocks]), blocks


def dominant_frequency(x: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.shape[0])))
    return float(np.argmax(spectrum) * rate / x.shape[0])


@pytest.mark.parametrize(
    ("subtype", "tolerance"),
    [
        ("PCM_U8", 2 / 256),
        ("PCM_16", 1 / 32768),
        ("PCM_24", 1 / 32768),
        ("PCM_32", 1 / 32768),
        ("FLOAT", 1 / 32768),
    ],
)
def test_every_pcm_layout_at_16k_reads_back_the_samples(tmp_path: Path, subtype: str, tolerance: float) -> None:
    signal = sine(440.0, 16000, 1.0)
    path = tmp_path / f"sine_{subtype}.wav"
    sf.write(path, signal, 16000, subtype=subtype)
    source = WavSource(str(path))
    assert source.duration == pytest.approx(1.0)
    assert source.name == path.name
    out, _ = read_all(source)
    assert out.dtype == np.int16
    assert out.shape[0] == 16000
    assert np.max(np.abs(out / 32768.0 - signal)) <= tolerance + 1 / 32768


@pytest.mark.parametrize(
    ("rate", "channels", "subtype"),
    [
        (44100, 2, "PCM_16"),
        (8000, 1, "PCM_16"),
        (48000, 1, "FLOAT"),
        (22050, 6, "PCM_24"),
        (11025, 1, "PCM_U8"),
    ],
)
def test_other_rates_and_channel_counts_become_16k_mono(tmp_path: Path, rate: int, channels: int, subtype: str) -> None:
    tone = sine(1000.0, rate, 1.5, amplitude=0.4)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    path = tmp_path / f"tone_{rate}_{channels}.wav"
    sf.write(path, data, rate, subtype=subtype)
    source = WavSource(str(path))
    assert source.duration == pytest.approx(1.5, abs=1 / rate)
    assert (source.sample_rate, source.channels) == (rate, channels)
    out, _ = read_all(source)
    assert out.dtype == np.int16
    assert abs(out.shape[0] - 24000) <= 2
    # The tone keeps its pitch and level through the resampler.
    assert dominant_frequency(out[4000:20000]) == pytest.approx(1000.0, abs=2.0)
    rms = np.sqrt(np.mean((out[4000:20000] / 32768.0) ** 2))
    assert rms == pytest.approx(0.4 / np.sqrt(2), rel=0.03)


def test_stereo_is_downmixed_by_the_mean(tmp_path: Path) -> None:
    left = sine(300.0, 16000, 0.5, amplitude=0.6)
    right = np.zeros_like(left)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    out, _ = read_all(WavSource(str(path)))
    assert np.max(np.abs(out / 32768.0 - left / 2)) <= 1 / 32768


def test_full_scale_float_is_clipped_not_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(path, np.array([1.5, -1.5, 1.0, -1.0, 0.0], dtype=np.float32), 16000, subtype="FLOAT")
    out, _ = read_all(WavSource(str(path)))
    assert out.tolist() == [32767, -32768, 32767, -32768, 0]


def test_blocks_have_the_requested_size_and_contiguous_start_times(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, sine(200.0, 16000, 1.01), 16000, subtype="PCM_16")
    _, blocks = read_all(WavSource(str(path), block_seconds=0.1))
    assert [b.samples.shape[0] for b in blocks] == [1600] * 10 + [160]
    assert [b.start for b in blocks] == pytest.approx([i * 0.1 for i in range(11)])


def test_the_default_block_size_depends_on_pace(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, sine(200.0, 16000, 2.5), 16000, subtype="PCM_16")
    # Unpaced, nobody waits for a block: 1 s blocks. Paced (live), 20 ms blocks keep the latency low.
    unpaced = WavSource(str(path))
    assert unpaced.block_seconds == FILE_BLOCK_SECONDS == 1.0
    _, blocks = read_all(unpaced)
    assert [b.samples.shape[0] for b in blocks] == [16000, 16000, 8000]
    paced = WavSource(str(path), pace=1000.0)
    assert paced.block_seconds == LIVE_BLOCK_SECONDS == 0.02
    assert paced.block_samples == 320
    assert WavSource(str(path), block_seconds=0.1).block_samples == 1600


def test_resampled_blocks_are_contiguous(tmp_path: Path) -> None:
    path = tmp_path / "tone44.wav"
    sf.write(path, sine(200.0, 44100, 2.0), 44100, subtype="PCM_16")
    _, blocks = read_all(WavSource(str(path), block_seconds=0.03))
    position = 0
    for block in blocks:
        assert block.start == pytest.approx(position / 16000)
        position += block.samples.shape[0]
    assert abs(position - 32000) <= 2


def test_a_long_file_is_read_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    minutes = 4
    with sf.SoundFile(path, "w", samplerate=44100, channels=2, subtype="PCM_16") as f:
        for _ in range(minutes * 6):
            f.write(np.zeros((441000, 2), dtype=np.int16) + 1000)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        total = 0
        for block in WavSource(str(path)).blocks():
            total += block.samples.shape[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(total - minutes * 60 * 16000) <= 2
    assert peak < size / 10, f"peak {peak} bytes while reading a {size}-byte file"


def test_flac_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    sf.write(path, sine(500.0, 32000, 0.5), 32000, subtype="PCM_16")
    source = WavSource(str(path))
    out, _ = read_all(source)
    assert source.duration == pytest.approx(0.5)
    assert abs(out.shape[0] - 8000) <= 2


def test_real_recording_is_read_exactly() -> None:
    path = SPEECH / "asr" / "jfk_inaugural_1961.wav"
    if not path.is_file():
        pytest.skip(f"speech data not found at {SPEECH}")
    expected, rate = sf.read(path, dtype="int16")
    assert rate == 16000
    out, _ = read_all(WavSource(str(path)))
    np.testing.assert_array_equal(out, expected)


# -- errors ---------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    with pytest.raises(AudioError, match=r"nothing\.wav: no such file"):
        WavSource(str(path))


def test_zero_length_file(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"x\.wav: file is empty"):
        WavSource(str(path))


def test_header_only_wav_has_no_audio(tmp_path: Path) -> None:
    path = tmp_path / "header.wav"
    sf.write(path, np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"header\.wav: file has no audio"):
        WavSource(str(path))


def test_unfinalised_header_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    sf.write(path, sine(200.0, 16000, 1.0), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = b"\x00\x00\x00\x00"  # the data chunk's size, as a killed recorder leaves it
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"killed\.wav: file has no audio according to its header .* sox"):
        WavSource(str(path))


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "recording.wav"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match=r"recording\.wav: not a WAV file \(the header is not RIFF/WAVE\)"):
        WavSource(str(path))


def test_text_file_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are my meeting notes, not audio\n")
    with pytest.raises(AudioError, match=r"notes\.wav: not a WAV file \(it looks like a text file\)"):
        WavSource(str(path))


def test_truncated_riff_header(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    with pytest.raises(AudioError, match=r"cut\.wav: corrupt or unsupported WAV file") as info:
        WavSource(str(path))
    assert "\n" not in info.value.message


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is a directory"):
        WavSource(str(tmp_path))


@pytest.mark.parametrize("kwargs", [{"pace": 0}, {"pace": -1.0}, {"block_seconds": 0.0}, {"block_seconds": 60}])
def test_bad_options(tmp_path: Path, kwargs: dict) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, sine(200.0, 16000, 0.1), 16000)
    with pytest.raises(InvalidArgument):
        WavSource(str(path), **kwargs)


# -- pacing ---------------------------------------------------------------------------------------


def test_pace_two_takes_at_least_half_the_duration(tmp_path: Path) -> None:
    path = tmp_path / "one_second.wav"
    sf.write(path, sine(200.0, 16000, 1.0), 16000, subtype="PCM_16")
    start = time.monotonic()
    out, _ = read_all(WavSource(str(path), pace=2.0, block_seconds=0.05))
    elapsed = time.monotonic() - start
    assert out.shape[0] == 16000
    assert elapsed >= 0.5 - 0.01

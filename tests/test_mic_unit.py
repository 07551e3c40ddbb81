"""MicSource logic that the virtual ALSA devices of test_mic.py cannot reach.

Those devices accept any rate and channel count, never flag an overflow and never fail; here a fake
``sounddevice`` module stands in for a device that only does 48 kHz stereo, for input overflows and
for a device that stops delivering, and the pure parts (block conversion, the callback's queue) run
on plain arrays.
"""

from __future__ import annotations

import importlib.abc
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from voxrelay.edge.capture.mic import (
    BlockConverter,
    InputDevice,
    MicSource,
    PortAudioMissing,
    _CaptureQueue,
    _resolve_device,
    list_input_devices,
    to_int16,
)
from voxrelay.edge.events import AudioBlock
from voxrelay.errors import AudioError, InvalidArgument, MissingDependency


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def dominant_hz(samples: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def run(converter: BlockConverter, chunks: Sequence[tuple[int, np.ndarray]]) -> list[AudioBlock]:
    blocks = []
    for position, chunk in chunks:
        blocks += converter.push(position, chunk)
    return blocks + converter.finish()


def chunked(signal: np.ndarray, frames: int, start: int = 0) -> list[tuple[int, np.ndarray]]:
    """(position, frames × channels chunk) pairs, as the PortAudio callback queues them."""
    frames_2d = signal if signal.ndim == 2 else signal[:, None]
    return [(start + i, frames_2d[i : i + frames]) for i in range(0, len(frames_2d), frames)]


def test_to_int16_scales_clips_and_zeroes_nan() -> None:
    values = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, np.nan, np.inf], dtype=np.float32)
    np.testing.assert_array_equal(to_int16(values), [-32768, -32768, -16384, 0, 16384, 32767, 0, 32767])


def test_16k_mono_passes_through_in_fixed_blocks() -> None:
    signal = sine(440, 0.51, 16000)  # 8160 frames: 25 blocks of 320 and 160 left for the end
    blocks = run(BlockConverter(16000, 320, soxr_module=None), chunked(signal, 500))

    assert [len(b.samples) for b in blocks] == [320] * 25 + [160]
    assert [b.start for b in blocks] == pytest.approx([i * 0.02 for i in range(26)])
    np.testing.assert_array_equal(np.concatenate([b.samples for b in blocks]), to_int16(signal))


def test_48k_stereo_is_downmixed_and_resampled() -> None:
    import soxr

    left, right = sine(440, 1.0, 48000, 0.6), sine(440, 1.0, 48000, 0.2)
    stereo = np.stack([left, right], axis=1)
    blocks = run(BlockConverter(48000, 320, soxr_module=soxr), chunked(stereo, 960))
    samples = np.concatenate([b.samples for b in blocks])

    assert len(samples) == 16000
    assert [b.start for b in blocks] == pytest.approx([i * 0.02 for i in range(len(blocks))])
    assert dominant_hz(samples[1000:15000]) == pytest.approx(440, abs=2)
    assert rms(samples[1000:15000]) == pytest.approx(0.4 / np.sqrt(2) * 32768, rel=0.01), "mean of L and R"


@pytest.mark.parametrize("rate", [16000, 48000])
def test_a_gap_ends_the_run_and_the_next_block_starts_after_it(rate: int) -> None:
    import soxr

    before, after = sine(440, 0.1, rate), sine(880, 0.1, rate)
    gap = rate // 4  # 0.25 s dropped
    chunks = chunked(before, rate // 50) + chunked(after, rate // 50, start=len(before) + gap)
    blocks = run(BlockConverter(rate, 320, soxr_module=soxr), chunks)

    starts = [b.start for b in blocks]
    assert starts == pytest.approx([i * 0.02 for i in range(5)] + [0.35 + i * 0.02 for i in range(5)])
    first, second = (np.concatenate([b.samples for b in blocks[i : i + 5]]) for i in (0, 5))
    assert dominant_hz(first) == pytest.approx(440, abs=10)
    assert dominant_hz(second) == pytest.approx(880, abs=10)


@dataclass
class Flags:
    input_overflow: bool = False


def test_the_callback_counts_overflows_and_drops_and_stops_queueing() -> None:
    capture = _CaptureQueue(capacity=2)
    chunk = np.zeros((320, 1), np.float32)
    for overflow in (True, False, True, False):
        capture.callback(chunk, 320, None, Flags(overflow))

    assert (capture.overflows, capture.dropped_frames, capture.position) == (2, 640, 1280)
    assert [capture.items.get()[0] for _ in range(2)] == [0, 320]
    capture.callback(chunk, 320, None, Flags())
    capture.end()
    capture.callback(chunk, 320, None, Flags())  # after stop: neither queued nor counted
    assert capture.items.get()[0] == 1280
    assert capture.items.get() == "end"
    assert capture.items.empty()
    assert capture.dropped_frames == 640


def test_end_never_blocks_on_a_full_queue() -> None:
    capture = _CaptureQueue(capacity=1)
    capture.callback(np.zeros((320, 1), np.float32), 320, None, Flags())
    capture.end()
    capture.end()
    assert capture.items.qsize() == 3


class FakePortAudioError(Exception):
    pass


class FakeSoundDevice(types.ModuleType):
    """A ``sounddevice`` with one input device that only opens at the given rates and channel counts.

    Its stream, once started, calls the callback with ``script`` (chunk, overflow flag) pairs, then
    the finished callback if ``finishes``.
    """

    PortAudioError = FakePortAudioError

    def __init__(
        self,
        script: Sequence[tuple[np.ndarray, bool]] = (),
        *,
        rates: Sequence[int] = (48000,),
        channels: Sequence[int] = (2,),
        finishes: bool = False,
    ) -> None:
        super().__init__("sounddevice")
        self.script, self.rates, self.channels, self.finishes = script, rates, channels, finishes
        self.opened: list[dict[str, Any]] = []
        self.closed = 0

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        devices = [
            {"name": "HDMI out", "hostapi": 0, "max_input_channels": 0, "default_samplerate": 48000.0},
            {"name": "USB PnP Mic", "hostapi": 0, "max_input_channels": 2, "default_samplerate": 48000.0},
        ]
        return {**devices[1], "index": 1} if kind == "input" else devices

    def query_hostapis(self) -> Any:
        return ({"name": "ALSA"},)

    def check_input_settings(self, *, device: int, samplerate: int, channels: int, dtype: str) -> None:
        if samplerate not in self.rates or channels not in self.channels:
            raise FakePortAudioError(f"Invalid settings: {samplerate} Hz, {channels} ch")

    def InputStream(self, **settings: Any) -> Any:
        self.opened.append(settings)
        return FakeStream(self, settings["callback"], settings["finished_callback"])


class FakeStream:
    def __init__(self, sd: FakeSoundDevice, callback: Callable[..., None], finished: Callable[[], None]) -> None:
        self.sd, self.callback, self.finished = sd, callback, finished

    def start(self) -> None:
        for chunk, overflow in self.sd.script:
            self.callback(chunk, len(chunk), None, Flags(overflow))
        if self.sd.finishes:
            self.finished()

    def abort(self, ignore_errors: bool = True) -> None:
        pass

    def close(self, ignore_errors: bool = True) -> None:
        self.sd.closed += 1


def install(monkeypatch: pytest.MonkeyPatch, sd: types.ModuleType | None) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", sd)


def test_a_48k_stereo_only_device_is_opened_as_such_and_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    stereo = np.stack([sine(440, 0.5, 48000, 0.6), sine(440, 0.5, 48000, 0.2)], axis=1)
    sd = FakeSoundDevice([(stereo[i : i + 960], False) for i in range(0, len(stereo), 960)])
    install(monkeypatch, sd)

    with MicSource() as mic:
        assert (mic.name, mic.device_samplerate, mic.channels) == ("mic:USB PnP Mic", 48000, 2)
        blocks = mic.blocks()
        samples = np.concatenate([next(blocks).samples for _ in range(24)])
        mic.stop()
        samples = np.concatenate([samples, *(b.samples for b in blocks)])

    assert sd.opened[0]["blocksize"] == 960
    assert (sd.opened[0]["samplerate"], sd.opened[0]["channels"]) == (48000, 2)
    assert len(samples) == 8000
    assert dominant_hz(samples[500:7500]) == pytest.approx(440, abs=3)
    assert rms(samples[500:7500]) == pytest.approx(0.4 / np.sqrt(2) * 32768, rel=0.01)
    assert sd.closed == 1


def test_overflow_flags_are_counted_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    chunk = np.zeros((320, 1), np.float32)
    install(
        monkeypatch,
        FakeSoundDevice([(chunk, True), (chunk, False), (chunk, True)], rates=[16000], channels=[1]),
    )

    mic = MicSource()
    blocks = mic.blocks()
    got = [next(blocks) for _ in range(3)]
    mic.stop()
    assert list(blocks) == []
    assert [b.start for b in got] == pytest.approx([0.0, 0.02, 0.04])
    assert (mic.overflows, mic.dropped_frames) == (2, 0)


def test_a_device_that_stops_delivering_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    chunk = np.zeros((320, 1), np.float32)
    sd = FakeSoundDevice([(chunk, False)], rates=[16000], channels=[1], finishes=True)
    install(monkeypatch, sd)

    blocks = MicSource().blocks()
    assert len(next(blocks).samples) == 320
    with pytest.raises(AudioError, match="'USB PnP Mic' stopped delivering audio"):
        next(blocks)
    assert sd.closed == 1


def test_a_device_that_accepts_no_format_names_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeSoundDevice(rates=[], channels=[]))
    with pytest.raises(AudioError, match=r"accepts none of the formats tried: 16000 Hz × 1 ch: Invalid"):
        MicSource("usb")


def test_missing_sounddevice_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, None)  # makes `import sounddevice` raise ImportError
    with pytest.raises(MissingDependency, match=r"pip install 'voxrelay\[mic\]'"):
        list_input_devices()
    with pytest.raises(MissingDependency, match="sounddevice"):
        MicSource()


class _NoPortAudio(importlib.abc.MetaPathFinder):
    """Imports ``sounddevice`` the way it fails when libportaudio is missing: OSError at import."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


def test_missing_portaudio_says_which_system_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    with pytest.raises(PortAudioMissing) as caught:
        MicSource()
    assert isinstance(caught.value, MissingDependency)
    assert "sudo apt install libportaudio2" in str(caught.value)
    assert "PortAudio library not found" in caught.value.message


@pytest.mark.parametrize(
    "settings",
    [
        {"block_seconds": 0},
        {"block_seconds": 2.0},
        {"block_seconds": 0.02, "queue_seconds": 0.01},
        {"device_samplerate": 0},
    ],
)
def test_bad_settings_are_rejected_before_touching_audio(settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        MicSource(**settings)


DEVICES = [
    InputDevice(0, "USB Audio", "ALSA", 2, 48000.0, False),
    InputDevice(3, "USB", "ALSA", 1, 16000.0, True),
    InputDevice(5, "pulse", "ALSA", 32, 44100.0, False),
]


@pytest.mark.parametrize(
    ("device", "index"),
    [(None, 3), ("", 3), (5, 5), ("5", 5), (" 0 ", 0), ("usb", 3), ("PULSE", 5), ("audio", 0)],
)
def test_device_resolution(device: int | str | None, index: int) -> None:
    assert _resolve_device(DEVICES, device).index == index


def test_without_a_default_the_first_input_device_is_used() -> None:
    devices = [InputDevice(2, "a", "ALSA", 1, 16000.0, False), InputDevice(4, "b", "ALSA", 1, 16000.0, False)]
    assert _resolve_device(devices, None).index == 2

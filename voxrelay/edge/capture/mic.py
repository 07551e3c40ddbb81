"""Live microphone capture through PortAudio (the ``sounddevice`` package, extra ``mic``).

    PortAudio thread: callback ──copy──▶ bounded queue ──▶ consumer (blocks()): downmix, resample, re-block

The PortAudio callback only copies each chunk into a bounded queue; everything else (downmix to mono,
resampling to 16 kHz with ``soxr.ResampleStream``, cutting into fixed-size blocks) happens in the thread
that iterates :meth:`MicSource.blocks`. Input overflows reported by PortAudio and chunks dropped because
the queue was full are counted, never fatal. Block times come from the sample count: after dropped
frames the next block starts later than the previous one ended, by the length of the gap.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from voxrelay import SAMPLE_RATE
from voxrelay.edge.events import AudioBlock
from voxrelay.errors import AudioError, InvalidArgument, MissingDependency

_DTYPE = "float32"
_END = "end"
_FINISHED = "finished"


class PortAudioMissing(MissingDependency):
    """``sounddevice`` is installed but the PortAudio system library it loads is not."""

    def __init__(self, detail: str) -> None:
        super().__init__("microphone capture", "sounddevice", "mic")
        self.message = (
            f"microphone capture needs the PortAudio system library, which could not be loaded ({detail}): "
            "install it with `sudo apt install libportaudio2` on Debian/Ubuntu/Raspberry Pi OS "
            "(`brew install portaudio` on macOS)"
        )
        self.args = (self.message,)
        self.package = "libportaudio2"


def _load_sounddevice() -> ModuleType:
    try:
        import sounddevice
    except ImportError as err:
        raise MissingDependency("microphone capture", "sounddevice", "mic") from err
    except OSError as err:  # sounddevice raises OSError at import when libportaudio is missing
        raise PortAudioMissing(str(err)) from err
    return sounddevice


def _load_soxr() -> ModuleType:
    try:
        import soxr
    except ImportError as err:
        raise MissingDependency("resampling microphone audio", "soxr", "edge") from err
    return soxr


@dataclass(frozen=True)
class InputDevice:
    """An audio input device as PortAudio reports it."""

    index: int
    name: str
    host_api: str
    max_input_channels: int
    default_samplerate: float
    is_default: bool

    def describe(self) -> str:
        default = ", default" if self.is_default else ""
        return (
            f"{self.index}: {self.name!r} ({self.host_api}, {self.max_input_channels} ch, "
            f"{self.default_samplerate:g} Hz{default})"
        )


def _input_devices(sd: ModuleType) -> list[InputDevice]:
    try:
        default_index = int(sd.query_devices(kind="input")["index"])
    except (sd.PortAudioError, KeyError, ValueError):
        default_index = -1
    host_apis = sd.query_hostapis()
    devices = []
    for index, info in enumerate(sd.query_devices()):
        if info["max_input_channels"] > 0:
            devices.append(
                InputDevice(
                    index=index,
                    name=str(info["name"]),
                    host_api=str(host_apis[info["hostapi"]]["name"]),
                    max_input_channels=int(info["max_input_channels"]),
                    default_samplerate=float(info["default_samplerate"]),
                    is_default=index == default_index,
                )
            )
    return devices


def list_input_devices() -> list[InputDevice]:
    """The audio input devices PortAudio sees, by index (what ``voxrelay devices`` prints)."""
    return _input_devices(_load_sounddevice())


def _resolve_device(devices: list[InputDevice], device: int | str | None) -> InputDevice:
    if not devices:
        raise AudioError(
            "no audio input device found: connect a microphone and check that the system sees it "
            "(`arecord -l` on Linux), or read a file as live audio: voxrelay transcribe --pace 1 FILE"
        )
    available = "; ".join(d.describe() for d in devices)
    if device is None or (isinstance(device, str) and not device.strip()):
        return next((d for d in devices if d.is_default), devices[0])
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    if isinstance(device, int):
        for d in devices:
            if d.index == device:
                return d
        raise InvalidArgument(f"no input device has index {device}; available input devices: {available}")
    wanted = device.strip().casefold()
    exact = [d for d in devices if d.name.casefold() == wanted]
    matches = exact or [d for d in devices if wanted in d.name.casefold()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InvalidArgument(f"no input device matches {device!r}; available input devices: {available}")
    names = "; ".join(d.describe() for d in matches)
    raise InvalidArgument(f"input device {device!r} is ambiguous, it matches {names}: give its index")


def _choose_format(sd: ModuleType, device: InputDevice, samplerate: int | None) -> tuple[int, int]:
    """(sample rate, channels) to open ``device`` with: 16 kHz if supported, else its default rate."""
    rates = [samplerate] if samplerate else [SAMPLE_RATE, round(device.default_samplerate)]
    channel_counts = sorted({c for c in (1, 2, device.max_input_channels) if c <= device.max_input_channels})
    problems = []
    for rate in rates:
        for channels in channel_counts:
            try:
                sd.check_input_settings(device=device.index, samplerate=rate, channels=channels, dtype=_DTYPE)
            except (sd.PortAudioError, ValueError) as err:
                problems.append(f"{rate} Hz × {channels} ch: {err}")
                continue
            return rate, channels
    raise AudioError(f"input device {device.describe()} accepts none of the formats tried: {'; '.join(problems)}")


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples (full scale ±1, PortAudio's scale) to int16, clipped; NaN becomes 0."""
    clean = np.nan_to_num(np.clip(samples, -1.0, 1.0), nan=0.0)
    return np.clip(np.rint(clean * 32768.0), -32768, 32767).astype(np.int16)


class BlockConverter:
    """Device chunks (float32, frames × channels, at ``device_rate``) to 16 kHz int16 blocks.

    Each chunk comes with its position in device frames since capture began. Consecutive chunks form
    a run that is downmixed, resampled as one stream and cut into ``block_samples`` blocks. A chunk
    that does not follow the previous one (frames were dropped) ends the run: the resampler is flushed,
    the run's last, shorter block is emitted, and a new run starts at the chunk's own time.
    """

    def __init__(self, device_rate: int, block_samples: int, *, soxr_module: ModuleType | None) -> None:
        self._rate = device_rate
        self._block = block_samples
        self._resampler: Any = None
        if device_rate != SAMPLE_RATE:
            if soxr_module is None:
                raise ValueError(f"resampling {device_rate} Hz to {SAMPLE_RATE} Hz needs soxr")
            self._resampler = soxr_module.ResampleStream(device_rate, SAMPLE_RATE, 1, dtype="float32")
        self._next_position = 0
        self._run_start = 0.0
        self._run_samples = 0
        self._pending: list[np.ndarray] = []

    def push(self, position: int, chunk: np.ndarray) -> list[AudioBlock]:
        blocks = []
        if position != self._next_position:
            blocks = self._end_run()
            self._run_start, self._run_samples = position / self._rate, 0
        self._next_position = position + len(chunk)
        mono = chunk.mean(axis=1, dtype=np.float32) if chunk.shape[1] > 1 else chunk[:, 0]
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32))
        self._pending.append(mono)
        return blocks + self._emit(final=False)

    def finish(self) -> list[AudioBlock]:
        """Flush the resampler and emit the last, possibly shorter, block."""
        return self._end_run()

    def _end_run(self) -> list[AudioBlock]:
        if self._resampler is not None:
            self._pending.append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self._resampler.clear()
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> list[AudioBlock]:
        pending = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        cut = len(pending) if final else len(pending) - len(pending) % self._block
        blocks = []
        for begin in range(0, cut, self._block):
            samples = to_int16(pending[begin : min(begin + self._block, cut)])
            blocks.append(AudioBlock(samples, self._run_start + self._run_samples / SAMPLE_RATE))
            self._run_samples += len(samples)
        self._pending = [pending[cut:]] if cut < len(pending) else []
        return blocks


class _CaptureQueue:
    """All the PortAudio callback touches: a queue of at most ``capacity`` chunks and two counters.

    The callback (on PortAudio's thread) is the only writer of the counters and of audio items; the
    end markers bypass the bound so that :meth:`end` never blocks.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.overflows = 0
        self.dropped_frames = 0
        self.position = 0  # device frames PortAudio delivered so far, dropped ones included
        self.stopping = threading.Event()
        self.items: queue.SimpleQueue[tuple[int, np.ndarray] | str] = queue.SimpleQueue()

    def callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
        if self.stopping.is_set():
            return
        if self.items.qsize() >= self.capacity:
            self.dropped_frames += frames
        else:
            self.items.put((self.position, indata.copy()))
        self.position += frames

    def finished(self) -> None:
        self.items.put(_FINISHED)

    def end(self) -> None:
        self.stopping.set()
        self.items.put(_END)


class MicSource:
    """16 kHz mono int16 audio blocks from a microphone; see the module docstring.

    ``device``: an index, a (case-insensitive part of a) device name, or ``None`` for the default input.
    ``device_samplerate``: the rate to open the device at; by default 16 kHz if the device supports it,
    else its default rate. ``block_seconds``: the length of each block. ``queue_seconds``: how far the
    consumer may fall behind before new audio is dropped (and counted in :attr:`dropped_frames`).
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        block_seconds: float = 0.02,
        queue_seconds: float = 5.0,
        device_samplerate: int | None = None,
    ) -> None:
        if not 0.001 <= block_seconds <= 1.0:
            raise InvalidArgument(f"block_seconds must be between 0.001 and 1 s, got {block_seconds!r}")
        if not block_seconds <= queue_seconds <= 600:
            raise InvalidArgument(f"queue_seconds must be between block_seconds and 600, got {queue_seconds!r}")
        if device_samplerate is not None and not 1000 <= device_samplerate <= 384000:
            raise InvalidArgument(f"device_samplerate must be 1000 to 384000 Hz, got {device_samplerate!r}")
        self._sd = _load_sounddevice()
        self.device = _resolve_device(_input_devices(self._sd), device)
        self.device_samplerate, self.channels = _choose_format(self._sd, self.device, device_samplerate)
        self._soxr = _load_soxr() if self.device_samplerate != SAMPLE_RATE else None
        self.name = f"mic:{self.device.name}"
        self.block_seconds = block_seconds
        self._capture = _CaptureQueue(max(1, math.ceil(queue_seconds / block_seconds - 1e-9)))
        self._lock = threading.Lock()
        self._started = False
        self._stream: Any = None

    @property
    def overflows(self) -> int:
        """Callbacks in which PortAudio flagged an input overflow (audio lost before it reached us)."""
        return self._capture.overflows

    @property
    def dropped_frames(self) -> int:
        """Frames (at :attr:`device_samplerate`) dropped because the consumer fell too far behind."""
        return self._capture.dropped_frames

    def blocks(self) -> Iterator[AudioBlock]:
        """Blocks as captured, until :meth:`stop` (then those already captured) or the device fails.

        The device is opened on the first ``next()``; a ``MicSource`` captures once.
        """
        with self._lock:
            if self._started:
                raise RuntimeError("MicSource.blocks() can only be called once; make a new MicSource")
            self._started = True
        return self._run()

    def _run(self) -> Iterator[AudioBlock]:
        converter = BlockConverter(
            self.device_samplerate, round(self.block_seconds * SAMPLE_RATE), soxr_module=self._soxr
        )
        try:
            self._open_stream()
            while True:
                item = self._capture.items.get()
                if isinstance(item, str):
                    if item == _END or self._capture.stopping.is_set():
                        break
                    raise AudioError(f"input device {self.device.name!r} stopped delivering audio")
                yield from converter.push(*item)
            yield from converter.finish()
        finally:
            self.close()

    def _open_stream(self) -> None:
        with self._lock:
            if self._capture.stopping.is_set():
                return
            try:
                self._stream = self._sd.InputStream(
                    device=self.device.index,
                    samplerate=self.device_samplerate,
                    channels=self.channels,
                    dtype=_DTYPE,
                    blocksize=max(1, round(self.block_seconds * self.device_samplerate)),
                    callback=self._capture.callback,
                    finished_callback=self._capture.finished,
                )
                self._stream.start()
            except self._sd.PortAudioError as err:
                self._close_stream_locked()
                raise AudioError(f"cannot open input device {self.device.describe()}: {err}") from err

    def stop(self) -> None:
        """Stop capturing; thread-safe. ``blocks()`` yields what was already captured, then ends."""
        self._capture.end()

    def close(self) -> None:
        """Stop capturing and release the device (what leaving a ``with`` block does)."""
        self.stop()
        with self._lock:
            self._close_stream_locked()

    def _close_stream_locked(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)

    def __enter__(self) -> MicSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

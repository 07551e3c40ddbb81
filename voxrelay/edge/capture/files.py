"""Audio sources: an audio file (WAV, FLAC, Ogg, MP3, ...) as a stream of 16 kHz mono int16 blocks.

:class:`WavSource` reads the file a block at a time (memory stays bounded on a two-hour recording) with
libsndfile, or PyAV for MP3 and what libsndfile does not read (see :mod:`voxrelay.edge.capture.decoders`),
downmixes to mono by averaging the channels, resamples to 16 kHz with soxr's streaming resampler and
converts to int16 with clipping. With ``pace`` it delivers blocks no faster than ``pace`` × real time,
as a microphone would, against ``time.monotonic()`` deadlines (no drift over long files).

The block size matters only for streaming: paced, 20 ms blocks (:data:`LIVE_BLOCK_SECONDS`) keep the
latency of live use low; unpaced, 1 s blocks (:data:`FILE_BLOCK_SECONDS`) let the VAD and segmenter work
on many frames per call, which is several times faster than 20 ms blocks and segments identically.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from voxrelay import SAMPLE_RATE
from voxrelay.edge.capture.decoders import AudioInfo, open_info, read_chunks
from voxrelay.edge.events import AudioBlock
from voxrelay.errors import AudioError, InvalidArgument

_READ_SECONDS = 0.5
"""How much source audio is read from the file at a time, at least (blocks are cut from it)."""

LIVE_BLOCK_SECONDS = 0.02
"""Default block duration with a pace: a microphone's, short enough for low streaming latency."""

FILE_BLOCK_SECONDS = 1.0
"""Default block duration without a pace: nobody waits on a block, so fewer, larger ones (any size
segments the same; see :class:`voxrelay.edge.vad.speech.SpeechSegmenter`)."""

_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


def _wav_promised_frames(path: Path, channels: int, subtype: str) -> int:
    """Frames a RIFF WAV's ``data`` chunk header promises; 0 when unknown (not RIFF, streamed, other coding)."""
    width = _SAMPLE_BYTES.get(subtype)
    if width is None:
        return 0
    try:
        with path.open("rb") as f:
            if f.read(12)[:4] != b"RIFF":
                return 0
            while len(chunk := f.read(8)) == 8:
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"data":
                    # 0 and 0xFFFFFFFF mean a streamed recording whose length was never written.
                    return 0 if size in (0, 0xFFFFFFFF) else size // (width * channels)
                f.seek(size + (size & 1), 1)
    except OSError:
        return 0
    return 0


class WavSource:
    """An audio file (WAV, FLAC, Ogg, MP3; with PyAV whatever FFmpeg decodes) as 16 kHz mono int16 blocks.

    ``pace``: None delivers blocks as fast as they can be read; 1.0 in real time; X at X times real
    time. ``block_seconds``: duration of each block (the last one may be shorter); by default
    :data:`FILE_BLOCK_SECONDS` without a pace and :data:`LIVE_BLOCK_SECONDS` with one.
    Raises :class:`AudioError` at construction for a missing, empty or unreadable file.
    """

    def __init__(self, path: str | Path, *, pace: float | None = None, block_seconds: float | None = None) -> None:
        if pace is not None and (isinstance(pace, bool) or not isinstance(pace, int | float) or not pace > 0):
            raise InvalidArgument(f"pace must be a positive speed-up (1.0 = real time) or None, got {pace!r}")
        if block_seconds is None:
            block_seconds = FILE_BLOCK_SECONDS if pace is None else LIVE_BLOCK_SECONDS
        if isinstance(block_seconds, bool) or not isinstance(block_seconds, int | float):
            raise InvalidArgument(f"block_seconds must be a number of seconds, got {block_seconds!r}")
        if not 0.001 <= block_seconds <= 10.0:
            raise InvalidArgument(f"block_seconds must be between 0.001 and 10 s, got {block_seconds!r}")
        self.path = Path(path)
        self.name = self.path.name
        self.pace = None if pace is None else float(pace)
        self.block_seconds = float(block_seconds)
        self.block_samples = max(1, round(block_seconds * SAMPLE_RATE))
        self.info: AudioInfo = self._open_info()
        self.sample_rate: int = self.info.sample_rate
        self.channels: int = self.info.channels
        self.frames: int = self.info.frames
        self.subtype: str = self.info.subtype
        self.duration: float = self.frames / self.sample_rate
        """Duration in seconds, of the audio the file holds."""
        promised = _wav_promised_frames(self.path, self.channels, self.subtype)
        self.missing_seconds: float = max(0, promised - self.frames) / self.sample_rate if promised else 0.0
        """Audio a WAV header promises that the file does not hold (a truncated copy), in seconds."""

    def _open_info(self) -> AudioInfo:
        path = self.path
        if not path.exists():
            raise AudioError(f"{path}: no such file")
        if path.is_dir():
            raise AudioError(f"{path}: is a directory, not an audio file")
        try:
            with path.open("rb") as f:
                head = f.read(64)
        except OSError as err:
            raise AudioError(f"{path}: cannot be read ({err.strerror or err})") from err
        if not head:
            raise AudioError(f"{path}: file is empty (0 bytes)")
        info = open_info(path, head)
        if info.sample_rate <= 0 or info.channels <= 0:
            raise AudioError(f"{path}: corrupt header ({info.sample_rate} Hz, {info.channels} channels)")
        if info.frames <= 0:
            size = path.stat().st_size
            if size > 1024:
                raise AudioError(
                    f"{path}: file has no audio according to its header (0 samples), yet it is {size} bytes "
                    "long: a recording whose header was never finalised? Repair it, e.g. "
                    "sox --ignore-length in.wav out.wav"
                )
            raise AudioError(f"{path}: file has no audio (the header is valid but holds 0 samples)")
        return info

    def __repr__(self) -> str:
        return f"WavSource({str(self.path)!r}, pace={self.pace}, block_seconds={self.block_seconds:g})"

    def blocks(self) -> Iterator[AudioBlock]:
        """The file as 16 kHz mono int16 blocks, ``start`` in seconds from its first sample."""
        sent = 0
        pending: list[np.ndarray] = []
        pending_samples = 0
        clock_start: float | None = None
        for chunk in self._resampled():
            pending.append(chunk)
            pending_samples += chunk.shape[0]
            if pending_samples < self.block_samples:
                continue
            data = np.concatenate(pending)
            whole = data.shape[0] // self.block_samples * self.block_samples
            for i in range(0, whole, self.block_samples):
                clock_start = self._wait(clock_start, sent + self.block_samples)
                yield AudioBlock(data[i : i + self.block_samples], sent / SAMPLE_RATE)
                sent += self.block_samples
            pending = [data[whole:]]
            pending_samples = data.shape[0] - whole
        if pending_samples:
            clock_start = self._wait(clock_start, sent + pending_samples)
            yield AudioBlock(np.concatenate(pending), sent / SAMPLE_RATE)

    def _wait(self, clock_start: float | None, end_sample: int) -> float:
        """With a pace, sleep until the block ending at ``end_sample`` would have been captured."""
        now = time.monotonic()
        if clock_start is None:
            clock_start = now
        if self.pace is not None:
            delay = clock_start + end_sample / SAMPLE_RATE / self.pace - now
            if delay > 0:
                time.sleep(delay)
        return clock_start

    def _resampled(self) -> Iterator[np.ndarray]:
        """Mono 16 kHz int16 chunks of varying length, read incrementally."""
        resampler = None
        if self.sample_rate != SAMPLE_RATE:
            import soxr

            resampler = soxr.ResampleStream(self.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        read_frames = max(1, round(max(_READ_SECONDS, self.block_seconds) * self.sample_rate))
        chunks = read_chunks(self.path, self.info, read_frames)
        data = next(chunks, None)
        while data is not None:
            following = next(chunks, None)  # one ahead: the resampler is told which chunk is the last
            mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            if resampler is not None:
                mono = resampler.resample_chunk(np.ascontiguousarray(mono), last=following is None)
            if mono.shape[0]:
                yield _to_int16(mono)
            data = following


def _to_int16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16, clipping what lies outside."""
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)

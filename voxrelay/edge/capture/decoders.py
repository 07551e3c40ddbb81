"""Decoders behind :class:`~voxrelay.edge.capture.files.WavSource`: libsndfile (soundfile) and FFmpeg (PyAV).

PCM and lossless files (WAV, FLAC, AIFF, ...) and Ogg Vorbis/Opus are read by libsndfile. MP3 is decoded
by PyAV when it is installed (the ``edge`` extra brings it): libsndfile's MP3 decoder, libmpg123, writes
messages such as ``[src/libmpg123/layer3.c:...] error: part2_3_length ...`` straight to the terminal on
ordinary files. Without PyAV, MP3 is read by libsndfile with the process's stderr captured while it
decodes, and libmpg123's lines are dropped. Any other file libsndfile cannot open (M4A/AAC, WebM, WMA,
MP4 audio, ...) is tried with PyAV, which decodes whatever FFmpeg reads and stays quiet on stderr.

Both decoders hand out float32 ``(frames, channels)`` arrays at the file's own rate; the source
downmixes and resamples them the same way whichever decoded them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxrelay.errors import AudioError, MissingDependency

SNDFILE_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".caf")
"""Extensions of the formats libsndfile reads (soundfile, always installed with the edge)."""

PYAV_SUFFIXES = (".m4a", ".aac", ".mp4", ".webm", ".mka", ".wma", ".mp2", ".ac3", ".amr")
"""Extensions of further formats read with PyAV (FFmpeg), when it is installed."""

_MP3_SUFFIXES = (".mp3", ".mp2", ".mpga")
_WAV_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64")
_DECODER_NOISE = re.compile(rb"mpg123")  # libmpg123's messages name their source file or the library

# fd 2 belongs to the whole process: one capture at a time, or two would restore each other's file.
_STDERR_LOCK = threading.Lock()


def pyav_available() -> bool:
    """Whether PyAV is installed (without importing it: help texts ask too)."""
    return importlib.util.find_spec("av") is not None


def readable_suffixes() -> tuple[str, ...]:
    """The file extensions this installation reads (PyAV's only when it is installed)."""
    return SNDFILE_SUFFIXES + (PYAV_SUFFIXES if pyav_available() else ())


def formats_read() -> str:
    """The formats read, in words, for help texts and error messages."""
    base = "WAV (any PCM layout), FLAC, Ogg Vorbis/Opus, MP3, AIFF"
    if pyav_available():
        return f"{base}, M4A/AAC, WebM, WMA, MP4 audio (whatever FFmpeg decodes, with PyAV)"
    return f"{base} (M4A/AAC, WebM, WMA and MP4 audio need PyAV: pip install av)"


@dataclass(frozen=True)
class AudioInfo:
    """What the header says: rate, channels, frames (estimated from the duration for compressed
    formats), the coding (libsndfile's subtype, or FFmpeg's codec name) and which decoder reads it."""

    sample_rate: int
    channels: int
    frames: int
    subtype: str
    decoder: str  # "sndfile" or "pyav"


def _import_soundfile() -> Any:
    try:
        import soundfile
    except ImportError as err:  # pragma: no cover - soundfile is part of the edge extra
        raise MissingDependency("reading audio files", "soundfile", "edge") from err
    return soundfile


def _looks_like_mp3(path: Path, head: bytes) -> bool:
    if path.suffix.lower() in _MP3_SUFFIXES or head[:3] == b"ID3":
        return True
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE6 in (0xE2, 0xE4, 0xE6)  # MPEG audio frame sync


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Capture what C libraries write to fd 2 meanwhile; forward all but libmpg123's lines afterwards."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as captured:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured if not _DECODER_NOISE.search(line))
            if kept:
                os.write(2, kept)


def open_info(path: Path, head: bytes) -> AudioInfo:
    """The header of ``path`` by the decoder that will read it; :class:`AudioError` when none can."""
    mp3 = _looks_like_mp3(path, head)
    if mp3 and pyav_available():
        try:
            return _pyav_info(path)
        except AudioError:
            pass  # libsndfile may still read it, or says why not
    soundfile = _import_soundfile()
    try:
        if mp3:
            with quiet_stderr():
                info = soundfile.info(str(path))
        else:
            info = soundfile.info(str(path))
    except (RuntimeError, ValueError, TypeError) as err:
        reason = str(err).split(": ", 1)[-1].strip() or type(err).__name__
        if head[:4] not in _WAV_MAGIC and not _is_text(head) and not mp3 and pyav_available():
            with contextlib.suppress(AudioError):
                return _pyav_info(path)
        raise AudioError(describe_unreadable(path, head, reason)) from err
    if str(info.format) == "MP3" and not mp3 and pyav_available():
        with contextlib.suppress(AudioError):
            return _pyav_info(path)
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames), str(info.subtype), "sndfile")


def _is_text(head: bytes) -> bool:
    return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def describe_unreadable(path: Path, head: bytes, reason: str) -> str:
    """A one-line explanation of why no decoder could open ``path``."""
    if head[:4] in _WAV_MAGIC and head[8:12] == b"WAVE":
        return f"{path}: corrupt or unsupported WAV file ({reason})"
    if head[:4] in _WAV_MAGIC:
        return f"{path}: not a WAV file (a RIFF file, but of type {head[8:12]!r} rather than WAVE)"
    wav = path.suffix.lower() in (".wav", ".wave", "")
    what = (
        "it looks like a text file"
        if _is_text(head)
        else "the header is not RIFF/WAVE"
        if wav
        else "no decoder recognises it"
    )
    if wav:
        return f"{path}: not a WAV file ({what})"
    if path.suffix.lower() in PYAV_SUFFIXES and not pyav_available():
        return f"{path}: {path.suffix} files are decoded with PyAV, which is not installed: pip install av"
    return f"{path}: not an audio file that can be read ({what}; formats read: {formats_read()})"


def _pyav_info(path: Path) -> AudioInfo:
    import av

    try:
        with av.open(str(path), mode="r") as container:
            stream: Any = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioError(f"{path}: holds no audio stream")
            rate = int(stream.rate or stream.codec_context.sample_rate or 0)
            channels = int(stream.channels or 0)
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / av.time_base
            else:
                seconds = -1.0
            codec = str(stream.codec_context.name)
    except (av.FFmpegError, ValueError, IndexError, OSError) as err:
        raise AudioError(f"{path}: cannot be decoded ({err})") from err
    frames = round(seconds * rate) if seconds >= 0 else sum(c.shape[0] for c in _pyav_chunks(path, rate or 1))
    return AudioInfo(rate, channels, frames, codec, "pyav")


def read_chunks(path: Path, info: AudioInfo, read_frames: int) -> Iterator[np.ndarray]:
    """The file's samples as float32 ``(frames, channels)`` arrays of about ``read_frames`` frames."""
    if info.decoder == "pyav":
        yield from _pyav_chunks(path, read_frames)
        return
    soundfile = _import_soundfile()
    mp3 = str(info.subtype).startswith("MPEG_LAYER")
    try:
        with soundfile.SoundFile(str(path)) as f:
            while True:
                if mp3:
                    with quiet_stderr():
                        data = f.read(read_frames, dtype="float32", always_2d=True)
                else:
                    data = f.read(read_frames, dtype="float32", always_2d=True)
                if data.shape[0]:
                    yield data
                if data.shape[0] < read_frames:
                    return
    except (RuntimeError, ValueError) as err:
        raise AudioError(f"{path}: cannot decode the audio ({err})") from err


def _pyav_chunks(path: Path, read_frames: int) -> Iterator[np.ndarray]:
    import av

    pending: list[np.ndarray] = []
    count = 0
    try:
        with av.open(str(path), mode="r") as container:
            stream: Any = next(s for s in container.streams if s.type == "audio")
            channels = int(stream.channels or 1)
            # Packed float at the file's own rate and layout: downmix and resampling are the source's.
            resampler = av.AudioResampler(format="flt", layout=stream.layout, rate=stream.rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):  # type: ignore[arg-type]
                    pending.append(out.to_ndarray().reshape(-1, channels))
                    count += pending[-1].shape[0]
                if count >= read_frames:
                    yield np.concatenate(pending)
                    pending, count = [], 0
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1, channels))
    except (av.FFmpegError, ValueError, IndexError, OSError, StopIteration) as err:
        raise AudioError(f"{path}: cannot decode the audio ({err})") from err
    if pending:
        data = np.concatenate(pending)
        if data.shape[0]:
            yield data

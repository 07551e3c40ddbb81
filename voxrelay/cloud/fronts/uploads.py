"""Decoding an uploaded audio file (any container and codec FFmpeg reads) to float32 16 kHz mono."""

from __future__ import annotations

import io

import numpy as np

from voxrelay import SAMPLE_RATE
from voxrelay.errors import AudioError, InvalidArgument, LimitExceeded, MissingDependency

ACCEPTED = "flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, opus, wav, webm"


def decode_upload(field: str, data: bytes, filename: str, max_seconds: float) -> np.ndarray:
    """The audio of ``data`` resampled to 16 kHz mono; stops decoding past ``max_seconds`` (LimitExceeded).

    Blocking (CPU): call it off the event loop.
    """
    try:
        import av
    except ImportError as err:  # pragma: no cover - depends on the install
        raise MissingDependency("decoding uploaded audio", "av", "cloud") from err
    name = filename or "the upload"
    if not data:
        raise InvalidArgument(f"{field}: {name} is empty; upload an audio file ({ACCEPTED})")
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioError(f"{field}: {name} holds no audio stream; upload an audio file ({ACCEPTED})")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):  # type: ignore[arg-type]
                    samples = out.to_ndarray().reshape(-1)
                    chunks.append(samples)
                    total += samples.size
                if total > limit:
                    raise LimitExceeded(
                        f"{field}: {name} is longer than the limit of {max_seconds:g} s of audio per request "
                        "(the server's --max-segment-seconds); split it, or stream it with `voxrelay transcribe`"
                    )
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except (AudioError, LimitExceeded):
        raise
    except (av.FFmpegError, ValueError, IndexError, OSError) as err:
        reason = str(err).split(": ", 1)[-1] if str(err) else type(err).__name__
        raise AudioError(f"{field}: {name} is not audio that can be decoded ({reason}); accepted: {ACCEPTED}") from err
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise AudioError(f"{field}: {name} holds no audio samples")
    return np.ascontiguousarray(np.clip(audio, -1.0, 1.0))

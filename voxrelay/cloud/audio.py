"""Wire audio: validating a declared format, checking chunks, decoding to float32 16 kHz mono."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxrelay import SAMPLE_RATE
from voxrelay.errors import InvalidArgument, LimitExceeded

ENCODINGS = {"LINEAR16": 2, "FLOAT32": 4}  # bytes per sample


@dataclass(frozen=True)
class WireFormat:
    """A validated audio format: encoding name, sample rate, channel count."""

    encoding: str = "LINEAR16"
    sample_rate_hz: int = SAMPLE_RATE
    channels: int = 1

    @property
    def frame_bytes(self) -> int:
        return ENCODINGS[self.encoding] * self.channels

    @property
    def bytes_per_second(self) -> int:
        return self.frame_bytes * self.sample_rate_hz

    def describe(self) -> str:
        layout = "mono" if self.channels == 1 else f"{self.channels} channels"
        return f"{self.encoding} {self.sample_rate_hz} Hz {layout}"

    def seconds(self, n_bytes: int) -> float:
        return n_bytes / self.bytes_per_second

    @classmethod
    def validate(
        cls, field: str, encoding: str, sample_rate_hz: int, channels: int, min_rate: int, max_rate: int
    ) -> WireFormat:
        """Build from wire values (unset = 0 / UNSPECIFIED means the default) or raise InvalidArgument."""
        if encoding == "AUDIO_ENCODING_UNSPECIFIED":
            encoding = "LINEAR16"
        if encoding not in ENCODINGS:
            raise InvalidArgument(f"{field}.encoding: {encoding} is not supported (accepted: {', '.join(ENCODINGS)})")
        rate = sample_rate_hz or SAMPLE_RATE
        if not min_rate <= rate <= max_rate:
            raise InvalidArgument(f"{field}.sample_rate_hz: {rate} is not supported (accepted: {min_rate}..{max_rate})")
        n_channels = channels or 1
        if n_channels not in (1, 2):
            raise InvalidArgument(f"{field}.channels: {n_channels} is not supported (accepted: 1 or 2)")
        return cls(encoding, rate, n_channels)

    def check_chunk(self, field: str, data: bytes, max_bytes: int) -> None:
        """Reject a chunk over the size limit or that is not a whole number of frames."""
        if len(data) > max_bytes:
            raise LimitExceeded(f"{field}: {len(data)} bytes is over the limit of {max_bytes} bytes per chunk")
        if len(data) % self.frame_bytes:
            raise InvalidArgument(
                f"{field}: {len(data)} bytes is not a whole number of frames "
                f"({self.frame_bytes} bytes per frame for {self.describe()})"
            )

    def decode(self, field: str, data: bytes) -> np.ndarray:
        """Decode whole frames to float32 mono 16 kHz in [-1, 1]."""
        if self.encoding == "LINEAR16":
            audio = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        else:
            audio = np.frombuffer(data, dtype="<f4").astype(np.float32)
            if not np.isfinite(audio).all():
                raise InvalidArgument(f"{field}: FLOAT32 audio contains NaN or infinite samples")
            if audio.size and float(np.abs(audio).max()) > 1.0 + 1e-3:
                raise InvalidArgument(
                    f"{field}: FLOAT32 samples must lie in [-1, 1] (found {float(np.abs(audio).max()):.3g}); "
                    "is this LINEAR16 audio declared as FLOAT32?"
                )
        if self.channels > 1:
            audio = audio.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        if self.sample_rate_hz != SAMPLE_RATE and audio.size:
            import soxr

            audio = soxr.resample(audio, self.sample_rate_hz, SAMPLE_RATE, quality="HQ").astype(np.float32)
        return np.ascontiguousarray(audio, dtype=np.float32)

"""Level normalisation in front of a level-sensitive VAD.

WebRTC's detector needs speech well above its fixed energy floor: speech 30 dB below a close-talking
level (a far microphone, a quiet talker) is hardly ever speech to it. :class:`LevelNormalizer` raises
quiet input towards a target level before the detector sees it: a peak follower tracks the level of
the frames (instant attack, a slow release in dB per second), and each frame gets the gain that brings
the followed level up to ``target_dbfs``, at most ``max_gain_db``; loud input is never attenuated.
The slow release keeps the gain steady over the pauses between words, so that pauses and room noise
are not raised to speech level.
"""

from __future__ import annotations

import math

import numpy as np

from voxrelay import SAMPLE_RATE
from voxrelay.errors import InvalidArgument

_START_DBFS = -60.0
"""The followed level at the start of a stream: quiet input is raised from its first frame on."""

_FLOOR = 1e-12
"""Added to the mean square so that digital silence has a finite level (-120 dBFS)."""


class LevelNormalizer:
    """Per-frame automatic gain (a stateful filter over consecutive frames; :meth:`reset` between streams)."""

    def __init__(
        self, frame_samples: int, target_dbfs: float, max_gain_db: float = 30.0, release_db_per_second: float = 0.5
    ) -> None:
        for name, value in (("target_dbfs", target_dbfs), ("max_gain_db", max_gain_db)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidArgument(f"level normalisation {name} must be a finite number, got {value!r}")
        if not -90.0 <= target_dbfs <= 0.0:
            raise InvalidArgument(f"level normalisation target_dbfs must lie between -90 and 0, got {target_dbfs!r}")
        if not 0.0 <= max_gain_db <= 60.0:
            raise InvalidArgument(f"level normalisation max_gain_db must lie between 0 and 60, got {max_gain_db!r}")
        if not release_db_per_second > 0:
            raise InvalidArgument(
                f"level normalisation release_db_per_second must be positive, got {release_db_per_second!r}"
            )
        self.frame_samples = frame_samples
        self.target_dbfs = float(target_dbfs)
        self.max_gain_db = float(max_gain_db)
        self.release_db_per_second = float(release_db_per_second)
        self._release = self.release_db_per_second * frame_samples / SAMPLE_RATE  # dB per frame
        self._level = _START_DBFS

    def gains_db(self, frames: np.ndarray) -> np.ndarray:
        """The gain of each of ``frames`` (n × frame_samples int16), in dB; advances the follower."""
        x = frames.astype(np.float64) / 32768.0
        levels = 10.0 * np.log10(np.einsum("ij,ij->i", x, x) / max(frames.shape[1], 1) + _FLOOR)
        gains = np.empty(levels.shape[0], dtype=np.float64)
        level, release, target, most = self._level, self._release, self.target_dbfs, self.max_gain_db
        for i, frame_level in enumerate(levels.tolist()):
            level = max(frame_level, level - release)
            gains[i] = min(max(target - level, 0.0), most)
        self._level = level
        return gains

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` with their gains applied (int16, clipped at full scale); advances the follower."""
        gains = self.gains_db(frames)
        if not gains.any():
            return frames
        scaled = frames.astype(np.float64) * (10.0 ** (gains / 20.0))[:, np.newaxis]
        return np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)

    def reset(self) -> None:
        self._level = _START_DBFS

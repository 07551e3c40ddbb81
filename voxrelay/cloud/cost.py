"""What an inference will cost, learned from the engine's own timings.

Whisper pads every call to a 30 s window, so a call has a fixed cost (the encoder, the first decoder
steps) before its length matters: a 0.5 s utterance costs nearly as much as a 3 s one, and a long
prompt adds decoder work of its own. The estimate is linear in three features,

    seconds ≈ per_call + per_audio_second · audio_seconds + per_prompt_token · prompt_tokens,

fitted online by recursive least squares with a forgetting factor (recent timings count most, so the
estimate follows the machine's load), starting from a prior that the first timings quickly replace.
Admission control and the fair scheduler measure work in these estimated seconds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

MIN_COST_SECONDS = 0.01
# A prompt (initial_prompt + hotwords) of more tokens than this makes a call *heavy*: the scheduler
# decodes it alone, one at a time per client (a few sentences of context stay below it).
HEAVY_PROMPT_TOKENS = 64


@dataclass(frozen=True)
class CostPrior:
    """Coefficients to start from (tiny.en, int8, one CPU core) and how firmly to hold them."""

    per_call: float = 0.3
    per_audio_second: float = 0.05
    per_prompt_token: float = 0.002
    # Weight of the prior, in observations' worth: a few timings move it.
    strength: float = 3.0
    # Each new timing discounts the older ones by this factor (0.98: about the last 50 count).
    forgetting: float = 0.98

    def __post_init__(self) -> None:
        if min(self.per_call, self.per_audio_second, self.per_prompt_token) < 0:
            raise ValueError("cost coefficients must not be negative")
        if not 0.5 <= self.forgetting <= 1.0 or self.strength <= 0:
            raise ValueError("forgetting must be in [0.5, 1] and strength positive")


class CostModel:
    """Estimated inference seconds of a call; thread-safe."""

    def __init__(self, prior: CostPrior | None = None) -> None:
        self.prior = prior or CostPrior()
        p = self.prior
        self._theta = np.array([p.per_call, p.per_audio_second, p.per_prompt_token], dtype=np.float64)
        # Inverse information of the prior, scaled per feature to its usual magnitude (1 call, ~5 s, ~50 tokens).
        self._p = np.diag([1.0, 1 / 25.0, 1 / 2500.0]) / p.strength
        self._lock = threading.Lock()
        self.observations = 0

    @property
    def coefficients(self) -> tuple[float, float, float]:
        """(per call, per audio second, per prompt token), each at least 0."""
        with self._lock:
            clipped = np.maximum(self._theta, 0.0)
        return float(clipped[0]), float(clipped[1]), float(clipped[2])

    def estimate(self, audio_seconds: float, prompt_tokens: int = 0) -> float:
        per_call, per_second, per_token = self.coefficients
        return max(
            MIN_COST_SECONDS, per_call + per_second * max(0.0, audio_seconds) + per_token * max(0, prompt_tokens)
        )

    def observe(self, audio_seconds: float, prompt_tokens: int, seconds: float) -> None:
        """Learn from one measured inference."""
        if not (seconds >= 0 and np.isfinite(seconds)):
            return
        x = np.array([1.0, max(0.0, audio_seconds), float(max(0, prompt_tokens))])
        lam = self.prior.forgetting
        with self._lock:
            px = self._p @ x
            gain = px / (lam + x @ px)
            self._theta = self._theta + gain * (seconds - x @ self._theta)
            self._p = (self._p - np.outer(gain, px)) / lam
            # Keep P symmetric and bounded (a long run of identical inputs would let it grow without end).
            self._p = (self._p + self._p.T) / 2
            np.clip(self._p, -1e3, 1e3, out=self._p)
            self.observations += 1

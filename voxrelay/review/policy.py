"""Whether a result goes to a person: the deployment's automation level and the result's confidence.

For ``partial`` automation a result is trusted unless one of Whisper's confidence signals, or the
label-free WER estimate made from them, is past the deployment's bound (``ReviewPolicy``); results the
model rates as no speech with no text are never queued (there is nothing to check). ``assistance``
queues every result with text as a suggestion; ``shadow`` and ``human`` queue every segment for a
person to transcribe, without showing them the model's text.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxrelay.cloud.rollout.config import Automation, ReviewPolicy


@dataclass(frozen=True)
class Confidence:
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    estimated_wer: float | None = None


@dataclass(frozen=True)
class ReviewDecision:
    reason: str  # needs_review, suggestion or transcribe
    why: tuple[str, ...]

    @property
    def shows_text(self) -> bool:
        return self.reason != "transcribe"


def low_confidence(c: Confidence, policy: ReviewPolicy) -> tuple[str, ...]:
    """Which signals are past their bound (empty: trusted)."""
    why = []
    if c.avg_logprob < policy.min_avg_logprob:
        why.append(f"avg_logprob {c.avg_logprob:.2f} below {policy.min_avg_logprob:g}")
    if c.no_speech_prob > policy.max_no_speech_prob:
        why.append(f"no_speech_prob {c.no_speech_prob:.2f} above {policy.max_no_speech_prob:g}")
    if c.compression_ratio > policy.max_compression_ratio:
        why.append(f"compression_ratio {c.compression_ratio:.2f} above {policy.max_compression_ratio:g}")
    if c.estimated_wer is not None and c.estimated_wer > policy.max_estimated_wer:
        why.append(f"estimated WER {c.estimated_wer:.2f} above {policy.max_estimated_wer:g}")
    return tuple(why)


def decide(automation: Automation, policy: ReviewPolicy, c: Confidence) -> ReviewDecision | None:
    """The review this result needs, or None."""
    if automation is Automation.FULL:
        return None
    if automation.withholds_text:
        return ReviewDecision("transcribe", (f"automation {automation.value}: a person transcribes every segment",))
    if not c.text.strip():
        return None  # the model heard no speech: nothing to check
    if automation is Automation.ASSISTANCE:
        return ReviewDecision("suggestion", ("automation assistance: every result is a suggestion",))
    why = low_confidence(c, policy)
    return ReviewDecision("needs_review", why) if why else None

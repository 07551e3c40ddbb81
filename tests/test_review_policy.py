"""Which results go to a person, by automation level and confidence."""

from __future__ import annotations

from voxrelay.cloud.rollout.config import Automation, ReviewPolicy
from voxrelay.review.policy import Confidence, decide

SURE = Confidence("hello there", avg_logprob=-0.2, no_speech_prob=0.01, compression_ratio=1.2, estimated_wer=0.05)
UNSURE = Confidence("hello their", avg_logprob=-1.1, no_speech_prob=0.02, compression_ratio=1.3, estimated_wer=0.5)
SILENT = Confidence("", avg_logprob=-1.0, no_speech_prob=0.9, compression_ratio=0.0)


def test_each_automation_level_queues_what_it_should() -> None:
    policy = ReviewPolicy()
    assert decide(Automation.FULL, policy, UNSURE) is None
    assert decide(Automation.PARTIAL, policy, SURE) is None
    unsure = decide(Automation.PARTIAL, policy, UNSURE)
    assert unsure is not None and unsure.reason == "needs_review" and unsure.shows_text
    assert any("avg_logprob -1.10 below -0.8" in w for w in unsure.why)
    assert any("estimated WER 0.50" in w for w in unsure.why)
    suggestion = decide(Automation.ASSISTANCE, policy, SURE)
    assert suggestion is not None and suggestion.reason == "suggestion"
    for level in (Automation.SHADOW, Automation.HUMAN):
        decision = decide(level, policy, SURE)
        assert decision is not None and decision.reason == "transcribe" and not decision.shows_text
    assert decide(Automation.PARTIAL, policy, SILENT) is None
    assert decide(Automation.ASSISTANCE, policy, SILENT) is None
    assert decide(Automation.HUMAN, policy, SILENT) is not None


def test_each_signal_can_trip_the_threshold_alone() -> None:
    policy = ReviewPolicy()
    for c in (
        Confidence("x y", -0.1, 0.7, 1.0),
        Confidence("x y", -0.1, 0.1, 2.9),
        Confidence("x y", -0.1, 0.1, 1.0, estimated_wer=0.6),
    ):
        decision = decide(Automation.PARTIAL, policy, c)
        assert decision is not None and len(decision.why) == 1

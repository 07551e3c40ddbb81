"""Rollout logic without a model: the deployments file, the analysis checks, the state machine, the
router's hashing and the audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxrelay.cloud.rollout import analysis as an
from voxrelay.cloud.rollout.analysis import Comparison, Sample, SampleWindow, Verdict
from voxrelay.cloud.rollout.audit import AuditEntry, AuditLog
from voxrelay.cloud.rollout.config import (
    AnalysisSettings,
    Automation,
    DeploymentSpec,
    RolloutConfig,
    Strategy,
    Thresholds,
    for_models,
    load_config,
)
from voxrelay.cloud.rollout.router import bucket, mirrored, route
from voxrelay.cloud.rollout.state import Phase, Role, RolloutState
from voxrelay.errors import FailedPrecondition, InvalidArgument, NotFound

# The deployments file.


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "deployments.yaml"
    path.write_text(text)
    return str(path)


def test_a_deployments_file_is_read_with_every_setting(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
stable: tiny
deployments:
  tiny: {model: tiny.en}
  base-de:
    model: base
    version: 0123456789ab
    options: {language: de, beam_size: 1}
    automation: partial
    review: {min_avg_logprob: -0.5}
candidate: {name: base-de, strategy: shadow, mirror_percent: 25}
analysis: {interval_seconds: 5, min_samples: 4, failure_limit: 1, steps: [10, 100],
           thresholds: {latency_p95_ratio: 3, disagreement_wer: null}}
grace_seconds: 30
""",
        )
    )
    assert config.stable == "tiny"
    spec = config.deployment("base-de")
    assert spec.options.language == "de" and spec.options.beam_size == 1
    assert spec.automation is Automation.PARTIAL and spec.review.min_avg_logprob == -0.5
    assert spec.load_key != config.deployment("tiny").load_key
    assert config.candidate is not None and config.candidate.strategy is Strategy.SHADOW
    assert config.analysis.steps == (10.0, 100.0) and config.analysis.window == 5
    assert config.analysis.thresholds.latency_p95_ratio == 3
    assert config.analysis.thresholds.disagreement_wer is None
    assert config.grace_seconds == 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployments: {tiny: {model: tiny.en, modle: x}}", "unknown setting(s) modle"),
        ("deployments: {tiny: {model: tiny.en}}\nstable: nope", "stable: 'nope' is not a declared deployment"),
        ("deployments: {tiny: {model: tiny.en, automation: mostly}}", "automation 'mostly' is not one of"),
        ("deployments: {tiny: {model: tiny.en}}\nanalysis: {steps: [5, 50]}", "must end at 100"),
        ("deployments: {tiny: {model: tiny.en}}\nanalysis: {steps: [50, 5, 100]}", "must rise"),
        ("deployments: {tiny: {model: tiny.en}, b: {}}\ncandidate: {name: b, mirror_percent: 150}", "outside 0..100"),
        ("deployments: {tiny: {model: tiny.en}}\ncandidate: {name: tiny}", "already the stable deployment"),
        ("deployments: {tiny: {model: tiny.en, version: v1}}", "is not a weights version"),
        ("deployments: {tiny: {options: {beam_size: 11}}}", "options.beam_size: 11 is out of range"),
        ("deployments: {'bad name': {}}", "is not a deployment name"),
        ("deployments: [tiny]", "must map each deployment's name"),
        ("deployments: {tiny: {}}\nanalysis: {interval_seconds: 10, window_seconds: 5}", "window_seconds: 5"),
        ("deployments: {tiny: {: x", "is not valid YAML"),
    ],
)
def test_a_bad_deployments_file_gets_one_line_naming_the_setting(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        load_config(write(tmp_path, text))
    assert message in info.value.message
    assert "\n" not in info.value.message and info.value.message.startswith("--deployments: ")


def test_serving_models_without_a_file_makes_one_deployment_each() -> None:
    config = for_models(("tiny.en", "base", "/models/my whisper"), "faster-whisper", "int8")
    assert [d.name for d in config.deployments] == ["tiny.en", "base", "my-whisper"]
    assert config.stable == "tiny.en"


# The checks.


def samples(n: int, *, at: float = 0.0, **fields: object) -> list[Sample]:
    return [Sample(at=at + i * 0.01, ok=True, **fields) for i in range(n)]  # type: ignore[arg-type]


def test_too_few_samples_is_inconclusive_never_a_pass() -> None:
    result = an.analyse(samples(3, latency=0.1), samples(50, latency=0.1), Thresholds(), 10)
    assert result.verdict is Verdict.INCONCLUSIVE
    assert all(c.verdict is Verdict.INCONCLUSIVE for c in result.checks)
    assert "inconclusive: fewer than 10 samples (3/50 samples)" in result.describe()
    assert an.analyse([], [], Thresholds(), 1).verdict is Verdict.INCONCLUSIVE


def test_each_check_fails_on_its_own_signal_and_passes_otherwise() -> None:
    good = dict(latency=0.5, avg_logprob=-0.3, estimated_wer=0.1, words=10)
    base = samples(40, **good)
    assert an.analyse(samples(40, **good), base, Thresholds(), 20).verdict is Verdict.PASS
    bad_cases = {
        "error_ratio": [Sample(at=0, ok=False)] * 5 + samples(35, **good),
        "latency_p95": samples(40, **{**good, "latency": 1.0}),
        "empty_ratio": samples(30, **good) + samples(10, **{**good, "empty": True}),
        "avg_logprob": samples(40, **{**good, "avg_logprob": -0.9}),
        "estimated_wer": samples(40, **{**good, "estimated_wer": 0.4}),
    }
    for check, cand in bad_cases.items():
        result = an.analyse(cand, base, Thresholds(), 20)
        assert result.verdict is Verdict.FAIL, check
        assert [c.check for c in result.failed] == [check], result.describe()


def test_latency_compares_p95_with_the_stable_on_the_same_window() -> None:
    base = samples(100, latency=1.0)
    slow_tail = samples(90, latency=1.0) + samples(10, latency=5.0)
    check = an.check_latency(slow_tail, base, 1.5, 20)
    assert check.verdict is Verdict.FAIL and check.candidate is not None and check.candidate > 1.5
    assert an.check_latency(samples(100, latency=1.4), base, 1.5, 20).verdict is Verdict.PASS


def test_disagreement_wer_is_word_weighted_and_needs_enough_segments() -> None:
    comps = [Comparison(at=0, errors=1, words=10)] * 9 + [Comparison(at=0, errors=9, words=10)]
    assert an.disagreement(comps) == pytest.approx(18 / 100)
    assert an.check_disagreement(comps, 0.35, 5).verdict is Verdict.PASS
    assert an.check_disagreement(comps, 0.1, 5).verdict is Verdict.FAIL
    assert an.check_disagreement(comps[:3], 0.35, 5).verdict is Verdict.INCONCLUSIVE
    result = an.analyse(samples(30), samples(30), Thresholds(), 5, comparisons=comps, estimated=False)
    assert {c.check for c in result.checks} == {
        "error_ratio",
        "latency_p95",
        "empty_ratio",
        "avg_logprob",
        "disagreement_wer",
    }


def test_a_disabled_check_is_left_out() -> None:
    result = an.analyse(samples(30), samples(30), Thresholds(latency_p95_ratio=None, estimated_wer_increase=None), 5)
    assert "latency_p95" not in {c.check for c in result.checks}


def test_the_window_keeps_recent_samples_only() -> None:
    window = SampleWindow(keep_seconds=10)
    for t in range(30):
        window.add(Sample(at=float(t), ok=True))
    assert len(window.samples(0, 100)) == 11  # 19..29
    assert [s.at for s in window.samples(25, 27)] == [25.0, 26.0, 27.0]


# The state machine.

SETTINGS = AnalysisSettings(min_samples=1, failure_limit=2, promote_after=2, steps=(5, 50, 100))


def steady() -> RolloutState:
    return RolloutState(stable="tiny", deployments=("tiny", "base", "broken"))


def test_shadow_then_canary_steps_then_promotion_keeps_the_old_stable_for_its_grace() -> None:
    s = steady().shadow("base", 50, now=0).state
    assert s.phase is Phase.SHADOW and s.role("base") is Role.SHADOW and s.mirror_percent == 50
    s = s.promote(now=1, grace=60, settings=SETTINGS).state
    assert s.phase is Phase.CANARY and s.weight == 5 and s.role("base") is Role.CANARY
    s = s.promote(now=2, grace=60, settings=SETTINGS).state
    assert s.weight == 50
    change = s.promote(now=3, grace=60, settings=SETTINGS)
    s = change.state
    assert s.stable == "base" and s.previous == "tiny" and s.previous_until == 63 and s.verifying
    assert s.role("tiny") is Role.PREVIOUS and s.candidate is None
    assert "base: canary 50% → 100%, now stable" in change.lines
    back = s.rollback(now=10)
    assert back.state.stable == "tiny" and back.state.previous is None
    assert "pointer swap" in back.lines[0]
    released = s.expire(now=63)
    assert released is not None and "tiny" not in released.state.deployments and released.state.previous is None
    assert s.expire(now=62) is None


def test_analysis_verdicts_step_promote_and_roll_back() -> None:
    s = steady().canary("base", now=0, settings=SETTINGS).state
    assert s.weight == 5
    assert s.judged(Verdict.INCONCLUSIVE, SETTINGS, 1, 60) is None
    s = s.judged(Verdict.PASS, SETTINGS, 1, 60).state  # type: ignore[union-attr]
    assert s.passes == 1 and s.weight == 5
    change = s.judged(Verdict.PASS, SETTINGS, 2, 60)
    assert change is not None and change.action == "auto-step" and change.state.weight == 50
    s = change.state.judged(Verdict.FAIL, SETTINGS, 3, 60).state  # type: ignore[union-attr]
    assert s.failures == 1 and s.candidate == "base"
    change = s.judged(Verdict.FAIL, SETTINGS, 4, 60)
    assert change is not None and change.action == "auto-rollback"
    assert change.state.candidate is None and change.state.stable == "tiny"
    assert "automatic rollback" in change.lines[0]


def test_without_auto_promote_passes_wait_for_a_human() -> None:
    manual = AnalysisSettings(min_samples=1, promote_after=1, auto_promote=False, steps=(5, 100))
    s = steady().canary("base", now=0, settings=manual).state
    change = s.judged(Verdict.PASS, manual, 1, 60)
    assert change is not None and change.action == "await-promote" and change.state.weight == 5


def test_a_failed_verification_after_a_switch_swaps_back() -> None:
    s = steady().promote(now=0, grace=600, settings=SETTINGS, name="base", switch=True).state
    assert s.stable == "base" and s.previous == "tiny" and s.verifying
    s = s.judged(Verdict.FAIL, SETTINGS, 1, 600).state  # type: ignore[union-attr]
    change = s.judged(Verdict.FAIL, SETTINGS, 2, 600)
    assert change is not None and change.state.stable == "tiny"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.shadow("nope", 10, 0), NotFound, "deployment 'nope' is not loaded here"),
        (lambda s: s.shadow("base", 101, 0), InvalidArgument, "mirror_percent: 101 is outside 0..100"),
        (lambda s: s.shadow("base", -1, 0), InvalidArgument, "outside 0..100"),
        (lambda s: s.canary("base", 0, SETTINGS, weight=250), InvalidArgument, "weight: 250 is outside 0..100"),
        (lambda s: s.canary("tiny", 0, SETTINGS), FailedPrecondition, "is the stable one already"),
        (lambda s: s.promote(0, 60, SETTINGS), FailedPrecondition, "no candidate to promote"),
        (lambda s: s.rollback(0), FailedPrecondition, "nothing to roll back"),
        (lambda s: s.remove("tiny"), FailedPrecondition, "stable one and cannot be removed"),
        (lambda s: s.remove("ghost"), NotFound, "'ghost' is not loaded"),
        (lambda s: s.add("base"), FailedPrecondition, "loaded already"),
    ],
)
def test_bad_requests_raise_one_line_and_change_nothing(call: object, error: type, message: str) -> None:
    s = steady()
    before = s
    with pytest.raises(error) as info:
        call(s)  # type: ignore[operator]
    assert message in info.value.message and "\n" not in info.value.message
    assert s == before


def test_one_candidate_at_a_time() -> None:
    s = steady().canary("base", now=0, settings=SETTINGS).state
    with pytest.raises(FailedPrecondition, match="'base' is the candidate now"):
        s.shadow("broken", 10, 0)
    with pytest.raises(InvalidArgument, match="'broken' is not the candidate"):
        s.promote(0, 60, SETTINGS, name="broken")
    with pytest.raises(FailedPrecondition, match="the candidate; roll it back"):
        s.remove("base")


# Routing.


def test_canary_routing_is_sticky_by_device_and_close_to_its_weight() -> None:
    s = steady().canary("base", now=0, settings=SETTINGS, weight=50).state
    devices = [f"device-{i}" for i in range(4000)]
    first = {d: route(s, d)[0] for d in devices}
    assert first == {d: route(s, d)[0] for d in devices}  # the same device, the same side
    share = sum(v == "base" for v in first.values()) / len(devices)
    assert 0.46 < share < 0.54
    # Raising the weight only moves devices from the stable to the candidate.
    higher = steady().canary("base", now=0, settings=SETTINGS, weight=80).state
    assert all(route(higher, d)[0] == "base" for d, v in first.items() if v == "base")
    assert route(steady(), "device-1") == ("tiny", Role.STABLE)


def test_mirroring_is_per_segment_and_deterministic() -> None:
    s = steady().shadow("base", 30, now=0).state
    keys = [f"dev/sess/{i}" for i in range(3000)]
    chosen = [k for k in keys if mirrored(s, k)]
    assert 0.26 < len(chosen) / len(keys) < 0.34
    assert chosen == [k for k in keys if mirrored(s, k)]
    assert not any(mirrored(steady(), k) for k in keys)
    assert 0 <= bucket("x", "y") < 10_000


# The audit log.


def test_the_audit_log_appends_and_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "data" / "audit.jsonl"
    log = AuditLog(path)
    log.append(AuditEntry(who="alice", action="canary", why="try base", changes=("base: idle → canary 5%",)))
    log.append(AuditEntry(who="voxrelay (analysis)", action="auto-rollback", why="", changes=("x",), figures={"a": 1}))
    with path.open("a") as f:
        f.write('{"who": "torn')  # a crash mid-line
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["who"] == "alice" and json.loads(lines[1])["figures"] == {"a": 1}
    again = AuditLog(path)
    assert [e.who for e in again.recent()] == ["alice", "voxrelay (analysis)"]
    assert again.recent(1)[0].action == "auto-rollback"


def test_spec_defaults() -> None:
    spec = DeploymentSpec(name="t")
    assert spec.automation is Automation.FULL and not spec.automation.reviews
    assert Automation.HUMAN.withholds_text and Automation.SHADOW.withholds_text
    assert not Automation.PARTIAL.withholds_text
    with pytest.raises(InvalidArgument):
        RolloutConfig(deployments=(spec, spec), stable="t")


def test_a_shadow_waits_while_the_stable_has_a_segment_queued_running_or_still_arriving() -> None:
    from types import SimpleNamespace

    from voxrelay.cloud.rollout.controller import RolloutController

    def busy(queued: int = 0, running: int = 0, open_segment: bool = False) -> bool:
        engine = SimpleNamespace(queued=queued, running=running, more_coming=lambda: open_segment)
        return RolloutController._stable_busy(SimpleNamespace(stable=SimpleNamespace(engine=engine)))  # type: ignore[arg-type]

    assert not busy()
    assert busy(queued=1) and busy(running=1) and busy(open_segment=True)


def test_a_shadow_latency_is_its_own_decode_time_not_the_time_it_yielded() -> None:
    from voxrelay.cloud.rollout.shadow import own_time

    # Two model threads: the busier one's CPU time is the decode's own critical path.
    assert own_time(5.0, {1: 10.0, 2: 3.0}, {1: 10.8, 2: 3.2}) == pytest.approx(0.8)
    assert own_time(0.5, {1: 10.0}, {1: 11.0}) == 0.5  # never more than the wall time
    assert own_time(2.0, {}, {}) == 2.0  # no thread figures: the wall time
    assert own_time(2.0, {1: 1.0}, {1: 1.0}) == 2.0  # under one clock tick: the wall time

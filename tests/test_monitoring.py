"""The monitors' pure logic: statistics against scipy.stats, windows, detection, profiles and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from scipy import stats as scipy_stats

from voxrelay.cloud.backends.base import ModelDescriptor
from voxrelay.cloud.watch import assign_profiles
from voxrelay.errors import InvalidArgument
from voxrelay.monitoring import binning, stats
from voxrelay.monitoring.detector import DriftDetector
from voxrelay.monitoring.features import SegmentObservation, audio_features, extract
from voxrelay.monitoring.monitor import Monitor
from voxrelay.monitoring.profile import ModelRef, build_profile, load_profile
from voxrelay.monitoring.thresholds import DriftSettings

MODEL = ModelRef("tiny.en", "abc123def456", "faster-whisper")


def test_ks_matches_scipy_and_the_binomial_test_is_conservative() -> None:
    rng = np.random.default_rng(0)
    reference = np.sort(rng.normal(size=256))
    for window in (rng.normal(size=20), rng.normal(0.7, 1.0, size=200)):
        d, p = stats.ks_2samp(reference, window)
        expected = scipy_stats.ks_2samp(reference, window, method="asymp")
        assert d == pytest.approx(expected.statistic)
        assert p == pytest.approx(expected.pvalue, rel=0.5, abs=0.02)
    score = stats.score_rate(0.02, 200, np.array([0.0] * 190 + [1.0] * 10))
    assert score.p_value >= scipy_stats.binomtest(10, 200, (0.02 * 200 + 1) / 202).pvalue


def test_wasserstein_equals_scipys_on_random_data() -> None:
    rng = np.random.default_rng(1)
    for n, m, shift in ((256, 20, 0.0), (256, 200, 0.7), (37, 5, -2.0), (3, 300, 5.0)):
        reference = np.sort(rng.normal(size=n))
        window = rng.normal(shift, rng.uniform(0.5, 3.0), size=m)
        window[: m // 4] = np.round(window[: m // 4], 1)  # ties, as rounded features have
        expected = scipy_stats.wasserstein_distance(reference, window)
        assert stats.wasserstein_distance(reference, window) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    same = np.sort(rng.normal(size=50))
    assert stats.wasserstein_distance(same, same) == 0.0


def test_a_window_keeps_the_last_values_in_order() -> None:
    w = binning.Window(3)
    for v in (1, 2, 3, 4):
        w.add(v)
    assert w.values().tolist() == [2.0, 3.0, 4.0] and w.count == 3


def values_for(rng: np.random.Generator, n: int, level: float = -25.0) -> list[dict[str, float | str]]:
    return [
        {
            "level_dbfs": level + rng.normal(0, 3),
            "avg_logprob": -0.3 + rng.normal(0, 0.1),
            "empty": 0.0,
            "language": "en",
        }
        for _ in range(n)
    ]


def test_learned_reference_then_a_level_shift_fires_and_clears() -> None:
    settings = DriftSettings(short_window=20, long_window=100, learn_segments=100, consecutive=2)
    detector = DriftDetector(MODEL, settings)
    rng = np.random.default_rng(1)
    for v in values_for(rng, 100):
        detector.add(v)
    assert detector.profile is not None and detector.profile.source == "learned"
    for v in values_for(rng, 100):
        detector.add(v)
        detector.score()
    assert detector.firing() == []
    fired_after = None
    for i, v in enumerate(values_for(rng, 40, level=-45.0)):
        detector.add(v)
        detector.score()
        if detector.firing():
            fired_after = i + 1
            break
    assert fired_after is not None and fired_after <= 20
    assert detector.firing() == ["level_dbfs"]


def test_audio_features_see_an_8_khz_line_and_noise() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(32000) / 16000
    speechlike = 0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.normal(size=t.size)
    wide = audio_features(speechlike.astype(np.float32))
    import soxr

    narrow = audio_features(soxr.resample(soxr.resample(speechlike, 16000, 8000), 8000, 16000).astype(np.float32))
    assert wide["bandwidth_db"] > -40 > narrow["bandwidth_db"]
    noisy = audio_features((speechlike + 0.2 * rng.normal(size=t.size)).astype(np.float32))
    assert noisy["snr_db"] < wide["snr_db"]


def test_extract_marks_repeats_and_hallucinations() -> None:
    from voxrelay.monitoring.features import RepeatTracker

    repeats = RepeatTracker()
    base = dict(
        audio=None, audio_seconds=2.0, avg_logprob=-0.3, no_speech_prob=0.1, compression_ratio=1.2, language="en"
    )
    first = extract(SegmentObservation(text="turn on the lights", session="d/s", start=0, end=2, **base), repeats)
    again = extract(SegmentObservation(text="turn on the light", session="d/s", start=3, end=5, **base), repeats)
    assert "repeat" not in first and again["repeat"] == 1.0
    loop = extract(SegmentObservation(text="a a a", session="", **{**base, "compression_ratio": 3.0}), repeats)
    assert loop["hallucination"] == 1.0 and loop["words_per_second"] == 1.5


def profile_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    values: dict[str, list[float | str]] = {}
    for v in values_for(rng, 60):
        for k, x in v.items():
            values.setdefault(k, []).append(x)
    return build_profile(values, MODEL, "folder", "tests", 60).save(tmp_path / "p.json")


def test_a_profile_round_trips_and_is_refused_for_another_model(tmp_path: Path) -> None:
    path = profile_file(tmp_path)
    profile = load_profile(path)
    assert profile.model == MODEL and set(profile.features) == {"level_dbfs", "avg_logprob", "empty", "language"}
    served = {"base": ModelDescriptor("base", "999999999999", "faster-whisper", True, "cpu/int8")}
    with pytest.raises(
        InvalidArgument,
        match=r"made for model tiny\.en \(version abc123def456\), which this server does not serve \(it serves base",
    ):
        assign_profiles([str(path)], served)
    same = {"tiny.en": ModelDescriptor("tiny.en", "abc123def456", "faster-whisper", False, "cpu/int8")}
    assert assign_profiles([str(path)], same)["tiny.en"].segments == 60


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="other"), "format: expected 'voxrelay-reference-profile'"),
        (lambda d: d.update(version=9), "version: 9 is not supported"),
        (
            lambda d: d["features"]["level_dbfs"].update(sample=[3, 1, 2]),
            "features.level_dbfs.sample: expected a non-empty sorted list",
        ),
        (lambda d: d["features"]["level_dbfs"].pop("scale"), "features.level_dbfs.scale: missing"),
        (lambda d: d["features"]["empty"].update(rate=2), "profile.features.empty.rate: 2.0 is not a share"),
        (lambda d: d["features"].update(loudness={}), "features.loudness: not a known feature"),
        (lambda d: d["model"].pop("version"), "model.version: missing"),
    ],
)
def test_a_malformed_profile_gets_one_error_naming_the_field(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = profile_file(tmp_path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidArgument) as err:
        load_profile(path)
    assert err.value.message.startswith(f"{path}") and message in err.value.message


def test_serve_refuses_a_malformed_profile_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voxrelay.cloud.settings import ServerSettings
    from voxrelay.cloud.watch import build_monitor

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidArgument, match=r"bad\.json: not JSON \(line 1"):
        build_monitor(ServerSettings(port=0, profiles=(str(bad),)), {}, CollectorRegistry())


def test_the_monitor_thread_measures_and_scores_off_the_caller() -> None:
    settings = DriftSettings(learn_segments=20, score_interval_seconds=0.05)
    monitor = Monitor({"tiny.en": MODEL}, settings, CollectorRegistry()).start()
    try:
        obs = SegmentObservation(None, 2.0, "hello there", -0.3, 0.1, 1.1, "en")
        for _ in range(30):
            monitor.submit("tiny.en", obs)
        import time

        deadline = time.monotonic() + 10
        while monitor.states()[0].reference_source != "learned":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        monitor.close()
    state = monitor.states()[0]
    assert state.reference_origin == "the first 20 segments served"


def test_the_wer_estimate_is_given_only_to_the_model_it_was_fitted_for() -> None:
    from voxrelay.monitoring.calibration import load_calibration

    calibration = load_calibration(None)
    assert calibration.model == "tiny.en"
    other = ModelRef("base", "0123456789ab", "faster-whisper")
    monitor = Monitor({"tiny": MODEL, "base": other}, DriftSettings(), CollectorRegistry(), calibration=calibration)
    obs = SegmentObservation(None, 2.0, "hello there", -0.4, 0.1, 1.1, "en")
    for _ in range(5):
        monitor.process("tiny", obs)
        monitor.process("base", obs)
    monitor.score()
    wer = {s.model: s.estimated_wer for s in monitor.states()}
    assert wer["tiny"] == pytest.approx(calibration.predict(-0.4, 0.1, 1.1))
    assert np.isnan(wer["base"])  # fitted on tiny.en: no estimate for another model

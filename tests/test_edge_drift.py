"""Drift of the edge's own input, on real speech: an edge profile made by `voxrelay profile --edge` from
the dev utterances; fresh undisturbed input raises no alarm, the same speech 30 dB quieter or noise alone
raises the matching one (said on stderr and exported as voxrelay_edge_drift_alarm); malformed
thresholds and profiles, a profile of the wrong side or made for another VAD are refused in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from prometheus_client import CollectorRegistry
from scipy import stats as scipy_stats

from tests.conftest import load_pcm16
from voxrelay.cli import main
from voxrelay.cloud.backends.base import ModelDescriptor
from voxrelay.cloud.watch import assign_profiles
from voxrelay.edge.agent import VadSettings
from voxrelay.edge.capture.files import WavSource
from voxrelay.edge.drift import EdgeDrift, measure_blocks
from voxrelay.edge.metrics import EdgeMetrics
from voxrelay.errors import InvalidArgument
from voxrelay.monitoring.binning import ks_p_bound, ks_statistic
from voxrelay.monitoring.profile import ModelRef, ReferenceProfile, build_profile, load_profile
from voxrelay.monitoring.thresholds import EdgeDriftSettings, load_thresholds

RATE = 16000
LEVEL = {"level_dbfs", "stream_level_dbfs"}


def edge_input(utterances: list[np.ndarray], seed: int, passes: int, gain_db: float = 0.0) -> np.ndarray:
    """The utterances in a random order, each within ±3 dB, between 0.75-1.5 s pauses of quiet room noise."""
    rng = np.random.default_rng(seed)
    pieces = []
    for _ in range(passes):
        for index in rng.permutation(len(utterances)):
            u = utterances[index].astype(np.float64) * 10 ** (rng.uniform(-3, 3) / 20)
            pieces.append(rng.standard_normal(int(rng.uniform(0.75, 1.5) * RATE)) * np.sqrt(np.mean(u**2)) * 0.02)
            pieces.append(u)
    audio = np.concatenate(pieces) * 10 ** (gain_db / 20)
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16)


def write(path: Path, audio: np.ndarray) -> Path:
    soundfile.write(str(path), audio, RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def utterances(english_utterances: list[dict[str, Any]], speech_dir: Path) -> list[np.ndarray]:
    # Not the recording that is itself band-limited to 8 kHz: that is a drift, not the reference.
    return [load_pcm16(speech_dir / row["audio"]) for row in english_utterances if "_8k" not in row["audio"]]


@pytest.fixture(scope="module")
def edge_profile(tmp_path_factory: pytest.TempPathFactory, utterances: list[np.ndarray]) -> Path:
    folder = tmp_path_factory.mktemp("known-good")
    for seed in (1, 2, 3):
        write(folder / f"room-{seed}.wav", edge_input(utterances, seed, passes=2))
    path = folder.parent / "edge-profile.json"
    assert main(["-q", "profile", "--edge", str(folder), "-o", str(path), "--vad", "silero"]) == 0
    return path


def run_edge(profile: Path, audio: np.ndarray, tmp_path: Path) -> tuple[list[str], CollectorRegistry]:
    """``audio`` through the edge's VAD and segmenter with the edge drift detector; what it says, and its metrics."""
    lines: list[str] = []
    registry = CollectorRegistry()
    vad = VadSettings(vad="silero")
    drift = EdgeDrift(
        "silero", load_thresholds(None).edge_drift, load_profile(profile, "edge"), EdgeMetrics(registry), lines.append
    )
    wav = write(tmp_path / "input.wav", audio)
    measure_blocks(drift.session(), vad.make_segmenter(), WavSource(str(wav)).blocks())
    return lines, registry


def alarms_said(lines: list[str]) -> set[str]:
    return {line.split(": ", 1)[1].split()[0] for line in lines if "drifts from the reference" in line}


def test_an_edge_profile_describes_the_input_of_this_vad(edge_profile: Path) -> None:
    profile = load_profile(edge_profile, "edge")
    assert profile.scope == "edge" and profile.model == ModelRef("silero", "", "edge VAD")
    assert profile.segments >= 60 and profile.source == "folder"
    assert {"level_dbfs", "snr_db", "bandwidth_db", "vad_probability", "stream_level_dbfs"} <= set(profile.features)
    assert {"stream_snr_db", "stream_speech_ratio", "stream_bandwidth_db"} <= set(profile.features)


def test_undisturbed_input_raises_no_alarm(edge_profile: Path, utterances: list[np.ndarray], tmp_path: Path) -> None:
    lines, registry = run_edge(edge_profile, edge_input(utterances, 11, passes=2), tmp_path)
    assert lines[0].startswith("edge drift: reference folder profile of")
    assert not alarms_said(lines), lines
    scores = [s for m in registry.collect() if m.name == "voxrelay_edge_drift_score" for s in m.samples]
    assert {s.labels["window"] for s in scores} == {"short", "long"}
    alarm = {
        s.labels["feature"]: s.value
        for m in registry.collect()
        if m.name == "voxrelay_edge_drift_alarm"
        for s in m.samples
    }
    assert set(alarm.values()) == {0.0} and set(alarm) >= LEVEL


def test_speech_30_db_quieter_raises_the_level_alarm(
    edge_profile: Path, utterances: list[np.ndarray], tmp_path: Path
) -> None:
    lines, registry = run_edge(edge_profile, edge_input(utterances, 12, passes=1, gain_db=-30.0), tmp_path)
    fired = alarms_said(lines)
    assert fired & LEVEL, lines
    assert not fired & {"bandwidth_db", "stream_bandwidth_db", "clipping_ratio", "stream_clipping_ratio"}, fired
    alarm = {
        s.labels["feature"]: s.value
        for m in registry.collect()
        if m.name == "voxrelay_edge_drift_alarm"
        for s in m.samples
    }
    assert any(alarm[f] == 1.0 for f in LEVEL)


def test_noise_alone_raises_the_noise_and_speech_alarms(edge_profile: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    fan = (rng.standard_normal(120 * RATE) * 300).astype(np.int16)  # a steady fan, about -40 dBFS
    lines, _ = run_edge(edge_profile, fan, tmp_path)
    fired = alarms_said(lines)
    assert fired & {"stream_snr_db", "stream_speech_ratio"}, lines


def test_without_a_profile_the_edge_learns_and_says_so(utterances: list[np.ndarray], tmp_path: Path) -> None:
    lines: list[str] = []
    registry = CollectorRegistry()
    drift = EdgeDrift("silero", EdgeDriftSettings(learn_segments=20), None, EdgeMetrics(registry), lines.append)
    assert lines == ["edge drift: no --drift-profile; learning the reference from the first 20 segments"]
    wav = write(tmp_path / "input.wav", edge_input(utterances, 14, passes=2))
    measure_blocks(drift.session(), VadSettings(vad="silero").make_segmenter(), WavSource(str(wav)).blocks())
    assert any(line.startswith("edge drift: reference learned from the first 20 segments") for line in lines), lines
    reference = {
        s.labels["source"]: s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "voxrelay_edge_drift_reference_segments"
    }
    assert reference == {"learned": 20.0}


def test_an_edge_profile_is_refused_as_a_recognizer_profile(edge_profile: Path) -> None:
    served = {"tiny.en": ModelDescriptor("tiny.en", "abc123def456", "faster-whisper", True, "cpu/int8")}
    with pytest.raises(InvalidArgument, match=r"scope: an edge input profile \(made by `voxrelay profile --edge`\)"):
        assign_profiles([str(edge_profile)], served)


def server_profile(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    values: dict[str, list[float | str]] = {"level_dbfs": list(rng.normal(-25, 3, 60)), "empty": [0.0] * 60}
    model = ModelRef("tiny.en", "abc123def456", "faster-whisper")
    profile: ReferenceProfile = build_profile(values, model, "folder", "tests", 60)
    return profile.save(tmp_path / "server.json")


def edited(edge_profile: Path, tmp_path: Path, edit: Any) -> Path:
    data = json.loads(edge_profile.read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


def refusal(capsys: pytest.CaptureFixture[str], tmp_path: Path, *options: str) -> str:
    wav = write(tmp_path / "one.wav", np.zeros(RATE, dtype=np.int16))
    assert main(["transcribe", str(wav), "--vad", "silero", *options]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_recognizer_profile_or_one_for_another_vad_is_refused_by_the_edge(
    edge_profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refusal(capsys, tmp_path, "--drift-profile", str(server_profile(tmp_path)))
    assert "scope: a recognizer's profile (made by `voxrelay profile` for a model)" in err
    other = edited(edge_profile, tmp_path, lambda d: d["model"].update(name="webrtc"))
    err = refusal(capsys, tmp_path, "--drift-profile", str(other))
    assert "made for the webrtc VAD, but this edge runs silero" in err
    assert "voxrelay profile --edge --vad silero" in err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(scope="phone"), "scope: 'phone' is not one of server, edge"),
        (
            lambda d: d["features"]["stream_level_dbfs"].update(proportions=[1.0]),
            "features.stream_level_dbfs.proportions: expected",
        ),
        (lambda d: d["features"].update(avg_logprob=d["features"]["level_dbfs"]), "features.avg_logprob: not a known"),
        (lambda d: d["model"].pop("name"), "model.name: missing"),
    ],
)
def test_a_malformed_edge_profile_gets_one_line_naming_the_field(
    edge_profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, message: str
) -> None:
    err = refusal(capsys, tmp_path, "--drift-profile", str(edited(edge_profile, tmp_path, edit)))
    assert message in err, err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("edge_drift:\n  short_window: ten\n", "edge_drift.short_window: expected a whole number, found 'ten'"),
        ("edge_drift:\n  stream_seconds: 0.1\n", "edge_drift.stream_seconds: 0.1 is out of range (0.5..60)"),
        ("edge_drift:\n  ignore: [avg_logprob]\n", "edge_drift.ignore: 'avg_logprob' is not a feature"),
        ("edge_drift:\n  min_segments: 50\n", "edge_drift.min_segments: 50 must lie in 2..short_window"),
        ("alerts:\n  edge_input_drift: {for: soon}\n", "alerts.edge_input_drift.for: 'soon' is not a duration"),
    ],
)
def test_a_malformed_thresholds_file_gets_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    bad = tmp_path / "thresholds.yaml"
    bad.write_text(text)
    err = refusal(capsys, tmp_path, "--thresholds", str(bad))
    assert f"{bad}: " in err and message in err, err


def test_the_p_value_bound_is_never_below_the_asymptotic_p_value() -> None:
    rng = np.random.default_rng(4)
    reference = np.sort(rng.normal(0, 1, 256))
    for shift, m in ((0.0, 20), (0.5, 20), (1.0, 10), (2.0, 200), (0.2, 200)):
        window = rng.normal(shift, 1, m)
        d = ks_statistic(reference, window)
        asymptotic = scipy_stats.ks_2samp(reference, window, method="asymp")
        assert math.isclose(d, asymptotic.statistic, abs_tol=1e-12)
        assert ks_p_bound(d, reference.size, m) >= asymptotic.pvalue

"""Alert rules from the thresholds file: promtool checks them, and its unit tests show each rule firing
on series that break its threshold and staying quiet on series that do not."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from voxrelay.cli import main
from voxrelay.monitoring.alerts import RULES, rule_groups
from voxrelay.monitoring.thresholds import ALERTS, load_thresholds

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")

SERVER = {"job": "voxrelay-recognizer", "instance": "asr-1:9100"}
EDGE = {"job": "voxrelay-edge", "instance": "pi-1:9101"}
MODEL = {"model": "tiny.en", "backend": "faster-whisper"}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def segments(per_minute: int) -> dict[str, str]:
    return series("voxrelay_asr_segments_total", {**SERVER, **MODEL, "slot": "stable"}, f"0+{per_minute}x40")


def histogram(name: str, labels: dict[str, str], bucket: str) -> list[dict[str, str]]:
    """Every observation in the bucket ending at ``bucket`` (60 per minute)."""
    out = []
    for le in ("1.0", "2.5", "5.0", "10.0", "+Inf"):
        full = le == "+Inf" or float(le) >= float(bucket)
        out.append(series(name, {**labels, "le": le}, "0+60x40" if full else "0x40"))
    return out


# alert key -> (series that fire it, labels of the firing alert, series that keep it quiet)
CASES: dict[str, tuple[list[dict[str, str]], dict[str, str], list[dict[str, str]]]] = {
    "error_ratio": (
        [
            series(
                "voxrelay_asr_invalid_inputs_total",
                {**SERVER, "code": "INVALID_ARGUMENT", "reason": "audio"},
                "0+10x40",
            ),
            segments(60),
        ],
        {**SERVER, "code": "INVALID_ARGUMENT"},
        [
            series(
                "voxrelay_asr_invalid_inputs_total", {**SERVER, "code": "INVALID_ARGUMENT", "reason": "audio"}, "0+1x40"
            ),
            segments(60),
        ],
    ),
    "e2e_latency_p95": (
        histogram("voxrelay_e2e_latency_seconds_bucket", EDGE, "10.0"),
        EDGE,
        histogram("voxrelay_e2e_latency_seconds_bucket", EDGE, "1.0"),
    ),
    "queue_wait_p95": (
        histogram("voxrelay_asr_queue_wait_seconds_bucket", {**SERVER, **MODEL}, "5.0"),
        {**SERVER, "model": "tiny.en"},
        histogram("voxrelay_asr_queue_wait_seconds_bucket", {**SERVER, **MODEL}, "1.0"),
    ),
    "real_time_factor": (
        [
            series("voxrelay_asr_inference_seconds_sum", {**SERVER, **MODEL}, "0+120x40"),
            series("voxrelay_asr_segment_audio_seconds_sum", {**SERVER, **MODEL}, "0+60x40"),
        ],
        {**SERVER, "model": "tiny.en"},
        [
            series("voxrelay_asr_inference_seconds_sum", {**SERVER, **MODEL}, "0+30x40"),
            series("voxrelay_asr_segment_audio_seconds_sum", {**SERVER, **MODEL}, "0+60x40"),
        ],
    ),
    "empty_transcript_ratio": (
        [series("voxrelay_asr_empty_transcripts_total", {**SERVER, **MODEL}, "0+30x40"), segments(60)],
        {**SERVER, "model": "tiny.en"},
        [series("voxrelay_asr_empty_transcripts_total", {**SERVER, **MODEL}, "0+6x40"), segments(60)],
    ),
    "hallucination_ratio": (
        [
            series(
                "voxrelay_asr_likely_hallucinations_total",
                {**SERVER, "model": "tiny.en", "reason": "repetitive"},
                "0+12x40",
            ),
            segments(60),
        ],
        {**SERVER, "model": "tiny.en"},
        [
            series(
                "voxrelay_asr_likely_hallucinations_total",
                {**SERVER, "model": "tiny.en", "reason": "repetitive"},
                "0+2x40",
            ),
            segments(60),
        ],
    ),
    "vad_false_positive_ratio": (
        [
            series("voxrelay_vad_false_positive_segments_total", {**EDGE, "vad": "silero"}, "0+30x40"),
            series("voxrelay_vad_segments_total", {**EDGE, "vad": "silero"}, "0+60x40"),
        ],
        {**EDGE, "vad": "silero"},
        [
            series("voxrelay_vad_false_positive_segments_total", {**EDGE, "vad": "silero"}, "0+3x40"),
            series("voxrelay_vad_segments_total", {**EDGE, "vad": "silero"}, "0+60x40"),
        ],
    ),
    "edge_input_dead": (
        [series("voxrelay_edge_input_level_dbfs", EDGE, "-80x40")],
        EDGE,
        [series("voxrelay_edge_input_level_dbfs", EDGE, "-30x40")],
    ),
    "edge_clipping": (
        [series("voxrelay_edge_clipping_ratio", EDGE, "0.05x40")],
        EDGE,
        [series("voxrelay_edge_clipping_ratio", EDGE, "0.001x40")],
    ),
    "spool_age": (
        [series("voxrelay_edge_spool_oldest_age_seconds", EDGE, "400+60x40")],
        EDGE,
        [series("voxrelay_edge_spool_oldest_age_seconds", EDGE, "0x40")],
    ),
    "spool_drops": (
        [series("voxrelay_edge_spool_dropped_segments_total", EDGE, "0+1x40")],
        EDGE,
        [series("voxrelay_edge_spool_dropped_segments_total", EDGE, "3x40")],
    ),
    "resource_exhausted_rate": (
        [
            series(
                "voxrelay_asr_invalid_inputs_total",
                {**SERVER, "code": "RESOURCE_EXHAUSTED", "reason": "overloaded"},
                "0+30x40",
            )
        ],
        SERVER,
        [
            series(
                "voxrelay_asr_invalid_inputs_total",
                {**SERVER, "code": "RESOURCE_EXHAUSTED", "reason": "overloaded"},
                "0+1x40",
            )
        ],
    ),
    "input_drift": (
        [
            series(
                "voxrelay_drift_alarm", {**SERVER, "model": "tiny.en", "feature": "level_dbfs", "side": "input"}, "1x40"
            )
        ],
        {**SERVER, "model": "tiny.en", "feature": "level_dbfs"},
        [
            series(
                "voxrelay_drift_alarm", {**SERVER, "model": "tiny.en", "feature": "level_dbfs", "side": "input"}, "0x40"
            )
        ],
    ),
    "output_drift": (
        [
            series(
                "voxrelay_drift_alarm",
                {**SERVER, "model": "tiny.en", "feature": "avg_logprob", "side": "output"},
                "1x40",
            )
        ],
        {**SERVER, "model": "tiny.en", "feature": "avg_logprob"},
        [
            series(
                "voxrelay_drift_alarm",
                {**SERVER, "model": "tiny.en", "feature": "avg_logprob", "side": "output"},
                "0x40",
            ),
            # An input alarm is not an output alarm.
            series(
                "voxrelay_drift_alarm", {**SERVER, "model": "tiny.en", "feature": "snr_db", "side": "input"}, "1x40"
            ),
        ],
    ),
    "edge_input_drift": (
        [series("voxrelay_edge_drift_alarm", {**EDGE, "feature": "stream_level_dbfs"}, "0x2 1x38")],
        {**EDGE, "feature": "stream_level_dbfs"},
        [
            series("voxrelay_edge_drift_alarm", {**EDGE, "feature": "stream_level_dbfs"}, "0x40"),
            # An alarm that cleared after a minute is not firing 2 minutes later.
            series("voxrelay_edge_drift_alarm", {**EDGE, "feature": "bandwidth_db"}, "1x1 0x39"),
        ],
    ),
    "estimated_wer": (
        [series("voxrelay_asr_estimated_wer", {**SERVER, "model": "tiny.en"}, "0.5x40")],
        {**SERVER, "model": "tiny.en"},
        [series("voxrelay_asr_estimated_wer", {**SERVER, "model": "tiny.en"}, "0.1x40")],
    ),
    "no_traffic": (
        # Up, with no segment series at all yet: silence must not pass as "no problem".
        [series("voxrelay_asr_active_streams", SERVER, "0x40")],
        SERVER,
        [series("voxrelay_asr_active_streams", SERVER, "1x40"), segments(60)],
    ),
    "target_down": (
        [series("up", SERVER, "0x40")],
        SERVER,
        [series("up", SERVER, "1x40")],
    ),
}


def expected_annotations(key: str, labels: dict[str, str], rules: dict[str, Any]) -> dict[str, str]:
    rule = next(r for r in rules["groups"][0]["rules"] if r["labels"]["threshold_key"] == key)
    out = {}
    for name, text in rule["annotations"].items():
        out[name] = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
    return out


def promtool_tests(rules: dict[str, Any]) -> dict[str, Any]:
    tests = []
    for key in ALERTS:
        firing, labels, quiet = CASES[key]
        rule = next(r for r in rules["groups"][0]["rules"] if r["labels"]["threshold_key"] == key)
        alert_labels = {**labels, "severity": rule["labels"]["severity"], "threshold_key": key}
        expected = [{"exp_labels": alert_labels, "exp_annotations": expected_annotations(key, labels, rules)}]
        for input_series, exp in ((firing, expected), (quiet, [])):
            tests.append(
                {
                    "interval": "1m",
                    "input_series": input_series,
                    "alert_rule_test": [{"eval_time": "30m", "alertname": RULES[key].name, "exp_alerts": exp}],
                }
            )
    return {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    assert set(CASES) == set(ALERTS) == set(RULES)


@needs_promtool
def test_promtool_checks_the_rendered_rules_and_each_rule_fires_and_stays_quiet(tmp_path: Path) -> None:
    rules_path = tmp_path / "rules.yml"
    assert main(["alerts", "render", "-o", str(rules_path)]) == 0
    rules = yaml.safe_load(rules_path.read_text())
    assert rules == rule_groups(load_thresholds(None))
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in check.stdout
    tests_path = tmp_path / "rules_test.yml"
    tests_path.write_text(yaml.safe_dump(promtool_tests(rules), sort_keys=False))
    run = subprocess.run([PROMTOOL, "test", "rules", str(tests_path)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "SUCCESS" in run.stdout


@needs_promtool
def test_a_threshold_from_the_file_reaches_the_rule(tmp_path: Path) -> None:
    custom = tmp_path / "thresholds.yaml"
    custom.write_text("alerts:\n  empty_transcript_ratio:\n    threshold: 0.6\n    for: 1m\n")
    rules_path = tmp_path / "rules.yml"
    assert main(["alerts", "render", "--thresholds", str(custom), "-o", str(rules_path)]) == 0
    rule = next(
        r
        for r in yaml.safe_load(rules_path.read_text())["groups"][0]["rules"]
        if r["alert"] == "VoxrelayEmptyTranscriptsHigh"
    )
    assert rule["expr"].endswith("> 0.6") and rule["for"] == "1m"
    # The firing case above (ratio 0.5) now stays quiet.
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": CASES["empty_transcript_ratio"][0],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "VoxrelayEmptyTranscriptsHigh", "exp_alerts": []}
                ],
            }
        ],
    }
    (tmp_path / "t.yml").write_text(yaml.safe_dump(tests))
    run = subprocess.run([PROMTOOL, "test", "rules", "t.yml"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alerts:\n  error_ratio:\n    for: 5 minutes\n", "alerts.error_ratio.for: '5 minutes' is not a duration"),
        ("alerts:\n  error_ratio:\n    threshold: high\n", "alerts.error_ratio.threshold: expected a number"),
        ("alerts:\n  eror_ratio:\n    threshold: 1\n", "alerts.eror_ratio: not a known alert"),
        ("alerts:\n  error_ratio:\n    severity: loud\n", "alerts.error_ratio.severity: 'loud' is not one of"),
        ("drift:\n  short_window: 500\n", "drift.short_window: 500 must be at least 2 and below long_window"),
        ("drift:\n  ignore: [levels]\n", "drift.ignore: 'levels' is not a feature"),
        ("drift:\n  p_valu: 0.1\n", "drift.p_valu: not a drift setting"),
        ("alerts: [1, 2\n", "not valid YAML (line 2"),
    ],
)
def test_a_malformed_thresholds_file_gets_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["alerts", "render", "--thresholds", str(path), "-o", str(tmp_path / "r.yml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"voxrelay alerts: {path}: "), err
    assert message in err and "\n" not in err and "Traceback" not in err


def test_the_shipped_thresholds_document_every_alert() -> None:
    thresholds = load_thresholds(None)
    for key in ALERTS:
        alert = thresholds.alerts[key]
        assert len(alert.action) > 60, f"{key}: say what to do when it fires"

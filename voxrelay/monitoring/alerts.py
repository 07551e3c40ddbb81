"""Prometheus alert rules made from the thresholds file (``voxrelay alerts render``).

Each entry of the file's ``alerts`` section becomes one rule of the group ``voxrelay``; the PromQL is
fixed here, the numbers come from the file. Every rule carries its severity, a summary and the file's
``action`` text (what to do when it fires) as annotations, so that whoever is paged reads it.
Ratio rules divide by traffic and so go quiet without traffic: ``no_traffic`` is its own alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voxrelay.monitoring.features import FEATURES
from voxrelay.monitoring.thresholds import Thresholds

RATE_WINDOW = "5m"
INPUT_FEATURES = "|".join(f.name for f in FEATURES if f.side == "input")
OUTPUT_FEATURES = "|".join(f.name for f in FEATURES if f.side == "output")


@dataclass(frozen=True)
class Rule:
    name: str  # the alert's name in Prometheus
    expr: str  # PromQL with {t} for the threshold
    labels: tuple[str, ...]  # labels the alert keeps (for the summary)


def _g(text: str) -> str:
    return " ".join(text.split())


W = RATE_WINDOW
RULES: dict[str, Rule] = {
    "error_ratio": Rule(
        "VoxrelayErrorRatioHigh",
        _g(f"""sum by (job, instance, code) (rate(voxrelay_asr_invalid_inputs_total{{code!="RESOURCE_EXHAUSTED"}}[{W}]))
        / on (job, instance) group_left ()
        (sum by (job, instance) (rate(voxrelay_asr_segments_total[{W}]))
        + sum by (job, instance) (rate(voxrelay_asr_invalid_inputs_total[{W}]))) > {{t}}"""),
        ("code",),
    ),
    "e2e_latency_p95": Rule(
        "VoxrelayEndToEndLatencyHigh",
        _g(
            f"histogram_quantile(0.95, sum by (job, instance, le) "
            f"(rate(voxrelay_e2e_latency_seconds_bucket[{W}]))) > {{t}}"
        ),
        (),
    ),
    "queue_wait_p95": Rule(
        "VoxrelayQueueWaitHigh",
        _g(
            f"histogram_quantile(0.95, sum by (job, instance, model, le) "
            f"(rate(voxrelay_asr_queue_wait_seconds_bucket[{W}]))) > {{t}}"
        ),
        ("model",),
    ),
    "real_time_factor": Rule(
        "VoxrelaySlowerThanRealTime",
        _g(f"""sum by (job, instance, model) (rate(voxrelay_asr_inference_seconds_sum[{W}]))
        / sum by (job, instance, model) (rate(voxrelay_asr_segment_audio_seconds_sum[{W}])) > {{t}}"""),
        ("model",),
    ),
    "empty_transcript_ratio": Rule(
        "VoxrelayEmptyTranscriptsHigh",
        _g(f"""sum by (job, instance, model) (rate(voxrelay_asr_empty_transcripts_total[{W}]))
        / sum by (job, instance, model) (rate(voxrelay_asr_segments_total[{W}])) > {{t}}"""),
        ("model",),
    ),
    "hallucination_ratio": Rule(
        "VoxrelayHallucinationsHigh",
        _g(f"""sum by (job, instance, model) (rate(voxrelay_asr_likely_hallucinations_total[{W}]))
        / sum by (job, instance, model) (rate(voxrelay_asr_segments_total[{W}])) > {{t}}"""),
        ("model",),
    ),
    "vad_false_positive_ratio": Rule(
        "VoxrelayVadFalsePositivesHigh",
        _g(f"""sum by (job, instance, vad) (rate(voxrelay_vad_false_positive_segments_total[{W}]))
        / sum by (job, instance, vad) (rate(voxrelay_vad_segments_total[{W}])) > {{t}}"""),
        ("vad",),
    ),
    "edge_input_dead": Rule("VoxrelayEdgeInputDead", "voxrelay_edge_input_level_dbfs < {t}", ()),
    "edge_clipping": Rule("VoxrelayEdgeClipping", "voxrelay_edge_clipping_ratio > {t}", ()),
    "spool_age": Rule("VoxrelaySpoolBacklogOld", "voxrelay_edge_spool_oldest_age_seconds > {t}", ()),
    "spool_drops": Rule(
        "VoxrelaySpoolDroppedSegments", "increase(voxrelay_edge_spool_dropped_segments_total[15m]) > {t}", ()
    ),
    "resource_exhausted_rate": Rule(
        "VoxrelayResourceExhausted",
        _g(
            f"sum by (job, instance) "
            f'(rate(voxrelay_asr_invalid_inputs_total{{code="RESOURCE_EXHAUSTED"}}[{W}])) > {{t}}'
        ),
        (),
    ),
    "input_drift": Rule(
        "VoxrelayInputDrift",
        'max by (job, instance, model, feature) (voxrelay_drift_alarm{side="input"}) >= {t}',
        ("model", "feature"),
    ),
    "output_drift": Rule(
        "VoxrelayOutputDrift",
        'max by (job, instance, model, feature) (voxrelay_drift_alarm{side="output"}) >= {t}',
        ("model", "feature"),
    ),
    "edge_input_drift": Rule(
        "VoxrelayEdgeInputDrift", "max by (job, instance, feature) (voxrelay_edge_drift_alarm) >= {t}", ("feature",)
    ),
    "estimated_wer": Rule("VoxrelayEstimatedWerHigh", "voxrelay_asr_estimated_wer > {t}", ("model",)),
    "no_traffic": Rule(
        "VoxrelayNoTraffic",
        _g(f"""(sum by (job, instance) (rate(voxrelay_asr_segments_total[{W}]))
        or sum by (job, instance) (voxrelay_asr_active_streams) * 0) <= {{t}}"""),
        (),
    ),
    "target_down": Rule("VoxrelayTargetDown", 'up{job=~"voxrelay.*"} == {t}', ()),
}


def _number(value: float) -> str:
    return f"{value:g}"


def rule_groups(thresholds: Thresholds) -> dict[str, Any]:
    """The rules file as a dict (Prometheus' ``groups`` format)."""
    rules = []
    for key, rule in RULES.items():
        alert = thresholds.alerts[key]
        detail = "".join(f" {label}={{{{ $labels.{label} }}}}" for label in rule.labels)
        rules.append(
            {
                "alert": rule.name,
                "expr": rule.expr.replace("{t}", _number(alert.threshold)),
                "for": alert.for_,
                "labels": {"severity": alert.severity, "threshold_key": key},
                "annotations": {
                    "summary": alert.summary + (f" ({detail.strip()})" if detail else ""),
                    "threshold": _number(alert.threshold),
                    "action": alert.action,
                    "instance": "{{ $labels.instance }}",
                },
            }
        )
    return {"groups": [{"name": "voxrelay", "rules": rules}]}


def render(thresholds: Thresholds) -> str:
    header = (
        f"# Prometheus alert rules for voxrelay, made by `voxrelay alerts render` from {thresholds.source}.\n"
        "# Edit the thresholds file and render again rather than editing this file.\n"
    )
    return header + yaml.safe_dump(rule_groups(thresholds), sort_keys=False, width=100, allow_unicode=True)


def write_rules(thresholds: Thresholds, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(thresholds), encoding="utf-8")
    return target

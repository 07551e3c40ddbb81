"""The Grafana dashboard: one row per stage (edge capture and VAD, link, recognizer, end to end) with
software / input / output panels, then drift and alarms.

``python -m voxrelay.monitoring.grafana`` writes ``grafana/voxrelay.json`` beside this module (the
committed file; a test fails when it is stale); ``grafana/provisioning.yaml`` tells Grafana where to
find it. Queries use ``$__rate_interval`` and a ``job`` template variable for the recognizer and the
edges, as Prometheus' scrape config names them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

R = "$__rate_interval"
SERVER = 'job=~"$recognizer"'
EDGE = 'job=~"$edge"'

# (row title, [(panel title, kind, unit, [(legend, expr)])]); kind: software | input | output | drift
ROWS: list[tuple[str, list[tuple[str, str, str, list[tuple[str, str]]]]]] = [
    (
        "Edge: capture and VAD",
        [
            (
                "VAD time per frame p95",
                "software",
                "s",
                [
                    (
                        "{{instance}}",
                        f"histogram_quantile(0.95, sum by (instance, le) (rate(voxrelay_vad_frame_seconds_bucket{{{EDGE}}}[{R}])))",
                    )
                ],
            ),
            (
                "Input level (last second)",
                "input",
                "dBFS",
                [("{{instance}}", f"voxrelay_edge_input_level_dbfs{{{EDGE}}}")],
            ),
            ("Clipping ratio", "input", "percentunit", [("{{instance}}", f"voxrelay_edge_clipping_ratio{{{EDGE}}}")]),
            (
                "Speech ratio (VAD)",
                "input",
                "percentunit",
                [("{{instance}} {{vad}}", f"voxrelay_vad_speech_ratio{{{EDGE}}}")],
            ),
            (
                "Segments per minute",
                "input",
                "short",
                [("{{instance}}", f"sum by (instance) (rate(voxrelay_vad_segments_total{{{EDGE}}}[{R}])) * 60")],
            ),
            (
                "Edge input drift score (the edge's own detector, PSI, short window)",
                "drift",
                "short",
                [
                    (
                        "{{instance}} {{feature}}",
                        f'max by (instance, feature) (voxrelay_edge_drift_score{{{EDGE},window="short"}})',
                    )
                ],
            ),
            (
                "Edge input drift alarms",
                "drift",
                "short",
                [("{{instance}} {{feature}}", f"max by (instance, feature) (voxrelay_edge_drift_alarm{{{EDGE}}})")],
            ),
            (
                "VAD false-positive proxy",
                "output",
                "percentunit",
                [
                    (
                        "{{instance}}",
                        f"sum by (instance) (rate(voxrelay_vad_false_positive_segments_total{{{EDGE}}}[{R}])) / sum by (instance) (rate(voxrelay_vad_segments_total{{{EDGE}}}[{R}]))",
                    )
                ],
            ),
        ],
    ),
    (
        "Link",
        [
            (
                "Network time p95 (round trip less server time)",
                "software",
                "s",
                [
                    (
                        "{{instance}}",
                        f'histogram_quantile(0.95, sum by (instance, le) (rate(voxrelay_e2e_stage_seconds_bucket{{{EDGE},stage="network"}}[{R}])))',
                    )
                ],
            ),
            (
                "Segments in flight",
                "software",
                "short",
                [("{{instance}}", f"voxrelay_edge_segments_in_flight{{{EDGE}}}")],
            ),
            (
                "Spool depth and oldest age",
                "input",
                "short",
                [
                    ("segments {{instance}}", f"voxrelay_edge_spool_segments{{{EDGE}}}"),
                    ("oldest s {{instance}}", f"voxrelay_edge_spool_oldest_age_seconds{{{EDGE}}}"),
                ],
            ),
            (
                "Reconnects and drops",
                "output",
                "short",
                [
                    ("reconnects {{instance}}", f"increase(voxrelay_edge_reconnects_total{{{EDGE}}}[{R}])"),
                    ("dropped {{instance}}", f"increase(voxrelay_edge_spool_dropped_segments_total{{{EDGE}}}[{R}])"),
                ],
            ),
        ],
    ),
    (
        "Recognizer",
        [
            (
                "Segments per second",
                "software",
                "short",
                [("{{model}} {{slot}}", f"sum by (model, slot) (rate(voxrelay_asr_segments_total{{{SERVER}}}[{R}]))")],
            ),
            (
                "Inference and queue wait p95",
                "software",
                "s",
                [
                    (
                        "inference {{model}}",
                        f"histogram_quantile(0.95, sum by (model, le) (rate(voxrelay_asr_inference_seconds_bucket{{{SERVER}}}[{R}])))",
                    ),
                    (
                        "queue wait {{model}}",
                        f"histogram_quantile(0.95, sum by (model, le) (rate(voxrelay_asr_queue_wait_seconds_bucket{{{SERVER}}}[{R}])))",
                    ),
                ],
            ),
            (
                "Real-time factor",
                "software",
                "short",
                [
                    (
                        "{{model}}",
                        f"sum by (model) (rate(voxrelay_asr_inference_seconds_sum{{{SERVER}}}[{R}])) / sum by (model) (rate(voxrelay_asr_segment_audio_seconds_sum{{{SERVER}}}[{R}]))",
                    )
                ],
            ),
            (
                "Queue, in model, streams",
                "software",
                "short",
                [
                    ("queued {{model}}", f"voxrelay_asr_queue_depth{{{SERVER}}}"),
                    ("in model {{model}}", f"voxrelay_asr_in_flight{{{SERVER}}}"),
                    ("streams", f"voxrelay_asr_active_streams{{{SERVER}}}"),
                ],
            ),
            (
                "Process CPU",
                "software",
                "percentunit",
                [("{{instance}}", f"rate(process_cpu_seconds_total{{{SERVER}}}[{R}])")],
            ),
            (
                "Audio received (s per s)",
                "input",
                "short",
                [("{{instance}}", f"rate(voxrelay_asr_audio_received_seconds_total{{{SERVER}}}[{R}])")],
            ),
            (
                "Refused requests by code",
                "input",
                "short",
                [
                    (
                        "{{code}} {{reason}}",
                        f"sum by (code, reason) (rate(voxrelay_asr_invalid_inputs_total{{{SERVER}}}[{R}]))",
                    )
                ],
            ),
            (
                "Empty and likely hallucinated",
                "output",
                "percentunit",
                [
                    (
                        "empty {{model}}",
                        f"sum by (model) (rate(voxrelay_asr_empty_transcripts_total{{{SERVER}}}[{R}])) / sum by (model) (rate(voxrelay_asr_segments_total{{{SERVER}}}[{R}]))",
                    ),
                    (
                        "hallucinated {{model}}",
                        f"sum by (model) (rate(voxrelay_asr_likely_hallucinations_total{{{SERVER}}}[{R}])) / sum by (model) (rate(voxrelay_asr_segments_total{{{SERVER}}}[{R}]))",
                    ),
                ],
            ),
            (
                "Confidence: avg log-prob median",
                "output",
                "short",
                [
                    (
                        "{{model}}",
                        f"histogram_quantile(0.5, sum by (model, le) (rate(voxrelay_asr_avg_logprob_bucket{{{SERVER}}}[{R}])))",
                    )
                ],
            ),
            (
                "Detected languages",
                "output",
                "short",
                [("{{language}}", f"sum by (language) (rate(voxrelay_asr_detected_language_total{{{SERVER}}}[{R}]))")],
            ),
            (
                "Estimated WER (label-free)",
                "output",
                "percentunit",
                [("{{model}}", f"voxrelay_asr_estimated_wer{{{SERVER}}}")],
            ),
        ],
    ),
    (
        "End to end",
        [
            (
                "End of speech to result p50 / p95",
                "software",
                "s",
                [
                    (
                        "p50",
                        f"histogram_quantile(0.5, sum by (le) (rate(voxrelay_e2e_latency_seconds_bucket{{{EDGE}}}[{R}])))",
                    ),
                    (
                        "p95",
                        f"histogram_quantile(0.95, sum by (le) (rate(voxrelay_e2e_latency_seconds_bucket{{{EDGE}}}[{R}])))",
                    ),
                ],
            ),
            (
                "Latency by stage (mean)",
                "software",
                "s",
                [
                    (
                        "{{stage}}",
                        f"sum by (stage) (rate(voxrelay_e2e_stage_seconds_sum{{{EDGE}}}[{R}])) / sum by (stage) (rate(voxrelay_e2e_stage_seconds_count{{{EDGE}}}[{R}]))",
                    )
                ],
            ),
            (
                "Speech sent / audio read",
                "input",
                "percentunit",
                [
                    (
                        "{{instance}}",
                        f"rate(voxrelay_edge_sent_audio_seconds_total{{{EDGE}}}[{R}]) / rate(voxrelay_edge_audio_seconds_total{{{EDGE}}}[{R}])",
                    )
                ],
            ),
            (
                "Results by status",
                "output",
                "short",
                [("{{status}}", f"sum by (status) (rate(voxrelay_edge_results_total{{{EDGE}}}[{R}]))")],
            ),
        ],
    ),
    (
        "Drift and alarms",
        [
            (
                "Drift score (PSI) by feature, short window",
                "drift",
                "short",
                [("{{feature}}", f'max by (feature) (voxrelay_drift_score{{{SERVER},window="short"}})')],
            ),
            (
                "Drift score (PSI) by feature, long window",
                "drift",
                "short",
                [("{{feature}}", f'max by (feature) (voxrelay_drift_score{{{SERVER},window="long"}})')],
            ),
            (
                "Drift alarms",
                "drift",
                "short",
                [("{{model}} {{feature}}", f"max by (model, feature) (voxrelay_drift_alarm{{{SERVER}}})")],
            ),
            (
                "Reference (segments; source in the label: learning, learned, or the profile's kind)",
                "drift",
                "short",
                [("{{model}} {{source}}", f"voxrelay_drift_reference_segments{{{SERVER}}}")],
            ),
            (
                "Alerts firing or pending",
                "drift",
                "short",
                [
                    (
                        "{{alertname}} {{alertstate}} {{feature}}",
                        'count by (alertname, alertstate, feature) (ALERTS{alertname=~"Voxrelay.*"})',
                    )
                ],
            ),
        ],
    ),
]


def panels() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for title, row_panels in ROWS:
        out.append(
            {
                "type": "row",
                "title": title,
                "id": next_id,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        for i, (panel_title, kind, unit, targets) in enumerate(row_panels):
            out.append(
                {
                    "type": "timeseries",
                    "id": next_id,
                    "title": f"{panel_title}",
                    "description": f"{kind} panel of the {title.lower()} stage",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "gridPos": {"h": 7, "w": 8, "x": (i % 3) * 8, "y": y + (i // 3) * 7},
                    "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                    "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                    "targets": [
                        {
                            "refId": chr(65 + k),
                            "expr": expr,
                            "legendFormat": legend,
                            "datasource": {"type": "prometheus", "uid": "${datasource}"},
                        }
                        for k, (legend, expr) in enumerate(targets)
                    ],
                }
            )
            next_id += 1
        y += ((len(row_panels) + 2) // 3) * 7
    return out


def dashboard() -> dict[str, Any]:
    def variable(name: str, label: str, default: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "custom",
            "query": default,
            "current": {"text": default, "value": default},
            "options": [{"text": default, "value": default, "selected": True}],
        }

    return {
        "title": "voxrelay",
        "uid": "voxrelay-pipeline",
        "description": "Every stage of the voxrelay pipeline: software, input and output panels per stage, drift and alarms.",
        "tags": ["voxrelay", "speech"],
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
                variable("recognizer", "recognizer job", "voxrelay-recognizer"),
                variable("edge", "edge job", "voxrelay-edge"),
            ]
        },
        "panels": panels(),
    }


def queries(
    rate_interval: str = "1m", recognizer: str = "voxrelay-recognizer", edge: str = "voxrelay-edge"
) -> list[tuple[str, str]]:
    """Every panel's (title, PromQL) with the dashboard's variables filled in."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = (
                target["expr"]
                .replace("$__rate_interval", rate_interval)
                .replace("$recognizer", recognizer)
                .replace("$edge", edge)
            )
            out.append((panel["title"], expr))
    return out


FILE = Path(__file__).with_name("grafana") / "voxrelay.json"


def render() -> str:
    return json.dumps(dashboard(), indent=1) + "\n"


if __name__ == "__main__":
    FILE.parent.mkdir(exist_ok=True)
    FILE.write_text(render())
    print(f"wrote {FILE}")

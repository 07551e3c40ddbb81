"""What the built-in live page shows, sampled from the recognizer's own registry and monitor.

A :class:`Board` samples every ``interval`` seconds (its own thread, stopped by :meth:`Board.close`):
counter deltas become rates and ratios, gauges are read as they are, and the monitor gives the drift
table and the medians of the short windows. The server-side alerts of the thresholds file are
evaluated here over the same windows as the Prometheus rules (alerts that need the edges' metrics are
listed as such: they need Prometheus). Deployments come from a small :class:`DeploymentSource`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from voxrelay.monitoring.monitor import Monitor
from voxrelay.monitoring.thresholds import Thresholds, duration_seconds

HISTORY = 600  # points kept per series (20 minutes at 2 s)
EDGE_ONLY = (
    "e2e_latency_p95",
    "vad_false_positive_ratio",
    "edge_input_dead",
    "edge_clipping",
    "spool_age",
    "spool_drops",
    "edge_input_drift",
)


@dataclass(frozen=True)
class Deployment:
    name: str
    model: str
    version: str
    backend: str
    slot: str
    share: float  # of the segments recognised
    reference: str


class DeploymentSource(Protocol):
    def deployments(self) -> list[Deployment]: ...


def _totals(registry: CollectorRegistry) -> dict[str, float]:
    """Each sample name summed over its labels (one pass over the registry)."""
    out: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
            if sample.name == "voxrelay_asr_invalid_inputs_total":
                key = f"code:{sample.labels.get('code')}"
                out[key] = out.get(key, 0.0) + sample.value
            if sample.name.endswith("_bucket"):
                key = f"{sample.name}|{sample.labels.get('le')}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) pairs."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = upper, count
    return None


class Board:
    def __init__(
        self,
        registry: CollectorRegistry,
        monitor: Monitor,
        thresholds: Thresholds,
        deployments: DeploymentSource,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.monitor = monitor
        self.thresholds = thresholds
        self.source = deployments
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._snapshots: deque[tuple[float, dict[str, float]]] = deque(maxlen=HISTORY)
        self._points: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._since: dict[str, float] = {}  # alert key -> when its condition began to hold
        self._alarms: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Board:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="voxrelay-board", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    # -- sampling ----------------------------------------------------------------------------

    def _window(self, now: float, seconds: float) -> tuple[dict[str, float], dict[str, float], float] | None:
        """(old, new, dt) snapshots spanning about ``seconds`` back from the newest."""
        if len(self._snapshots) < 2:
            return None
        newest_t, newest = self._snapshots[-1]
        old_t, old = self._snapshots[0]
        for t, snap in reversed(self._snapshots):
            if newest_t - t >= seconds:
                old_t, old = t, snap
                break
        dt = newest_t - old_t
        return (old, newest, dt) if dt > 0 else None

    def sample(self) -> None:
        now = self.clock()
        totals = _totals(self.registry)
        states = {s.model: s for s in self.monitor.states()}
        with self._lock:
            previous = self._snapshots[-1] if self._snapshots else None
            self._snapshots.append((now, totals))
            point: dict[str, Any] = {"t": time.time()}  # wall clock: chart labels only
            if previous is not None:
                point.update(self._rates(previous[1], totals, now - previous[0]))
            point.update(
                queue_depth=totals.get("voxrelay_asr_queue_depth", 0.0),
                in_flight=totals.get("voxrelay_asr_in_flight", 0.0),
                active_streams=totals.get("voxrelay_asr_active_streams", 0.0),
            )
            for feature in ("avg_logprob", "no_speech_prob", "speech_ratio", "level_dbfs", "snr_db"):
                point[feature] = self._current(states, feature)
            wers = [s.estimated_wer for s in states.values() if not math.isnan(s.estimated_wer)]
            point["estimated_wer"] = max(wers) if wers else None
            self._points.append(point)
            self._alarms = self._evaluate(now, states)

    @staticmethod
    def _current(states: dict[str, Any], feature: str) -> float | None:
        for state in states.values():
            for f in state.features:
                if f.feature == feature and "short" in f.current and not math.isnan(f.current["short"]):
                    return float(f.current["short"])
        return None

    @staticmethod
    def _rates(old: dict[str, float], new: dict[str, float], dt: float) -> dict[str, float | None]:
        def d(name: str) -> float:
            return max(0.0, new.get(name, 0.0) - old.get(name, 0.0))

        segments = d("voxrelay_asr_segments_total")
        return {
            "segments_per_second": segments / dt if dt > 0 else None,
            "audio_per_second": d("voxrelay_asr_audio_received_seconds_total") / dt if dt > 0 else None,
            "queue_wait": _ratio(d("voxrelay_asr_queue_wait_seconds_sum"), d("voxrelay_asr_queue_wait_seconds_count")),
            "inference": _ratio(d("voxrelay_asr_inference_seconds_sum"), d("voxrelay_asr_inference_seconds_count")),
            "rtf": _ratio(d("voxrelay_asr_inference_seconds_sum"), d("voxrelay_asr_segment_audio_seconds_sum")),
            "empty_ratio": _ratio(d("voxrelay_asr_empty_transcripts_total"), segments),
            "hallucination_ratio": _ratio(d("voxrelay_asr_likely_hallucinations_total"), segments),
        }

    # -- alarms ------------------------------------------------------------------------------

    def _value(self, key: str, now: float, states: dict[str, Any]) -> tuple[float | None, str]:
        window = self._window(now, 300.0)
        if key in ("input_drift", "output_drift"):
            side = key.split("_")[0]
            firing = [
                f"{s.model}: {f.feature}" for s in states.values() for f in s.features if f.alarm and f.side == side
            ]
            return float(len(firing)), ", ".join(firing)
        if key == "estimated_wer":
            values = [s.estimated_wer for s in states.values() if not math.isnan(s.estimated_wer)]
            return (max(values) if values else None), ""
        if window is None:
            return None, ""
        old, new, dt = window

        def d(name: str) -> float:
            return max(0.0, new.get(name, 0.0) - old.get(name, 0.0))

        segments = d("voxrelay_asr_segments_total")
        invalid = d("voxrelay_asr_invalid_inputs_total")
        if key == "error_ratio":
            errors = invalid - self._code_delta(old, new, "RESOURCE_EXHAUSTED")
            return _ratio(errors, segments + invalid), ""
        if key == "resource_exhausted_rate":
            return self._code_delta(old, new, "RESOURCE_EXHAUSTED") / dt, ""
        if key == "real_time_factor":
            return _ratio(d("voxrelay_asr_inference_seconds_sum"), d("voxrelay_asr_segment_audio_seconds_sum")), ""
        if key == "empty_transcript_ratio":
            return _ratio(d("voxrelay_asr_empty_transcripts_total"), segments), ""
        if key == "hallucination_ratio":
            return _ratio(d("voxrelay_asr_likely_hallucinations_total"), segments), ""
        if key == "queue_wait_p95":
            buckets = sorted(
                (float(k.split("|")[1]), max(0.0, v - old.get(k, 0.0)))
                for k, v in new.items()
                if k.startswith("voxrelay_asr_queue_wait_seconds_bucket|")
            )
            return _quantile(0.95, buckets), ""
        if key == "no_traffic":
            return segments / dt, ""
        return None, ""

    def _code_delta(self, old: dict[str, float], new: dict[str, float], code: str) -> float:
        key = f"code:{code}"
        return max(0.0, new.get(key, 0.0) - old.get(key, 0.0))

    def _evaluate(self, now: float, states: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for key, alert in self.thresholds.alerts.items():
            row: dict[str, Any] = {
                "key": key,
                "summary": alert.summary,
                "action": alert.action,
                "threshold": alert.threshold,
                "for": alert.for_,
                "severity": alert.severity,
                "value": None,
                "detail": "",
            }
            if key in EDGE_ONLY or key == "target_down":
                row["state"] = "prometheus"  # needs the edges' metrics (or Prometheus itself)
                rows.append(row)
                continue
            value, detail = self._value(key, now, states)
            row["value"], row["detail"] = value, detail
            if value is None:
                self._since.pop(key, None)
                row["state"] = "no data"
            else:
                if key == "no_traffic":
                    holds = value <= alert.threshold and len(self._snapshots) > 1
                elif key in ("input_drift", "output_drift"):
                    holds = value >= alert.threshold
                else:
                    holds = value > alert.threshold
                if holds:
                    began = self._since.setdefault(key, now)
                    row["state"] = "firing" if now - began >= duration_seconds(alert.for_) else "pending"
                else:
                    self._since.pop(key, None)
                    row["state"] = "ok"
            rows.append(row)
        return rows

    # -- the page's data ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self._lock:
            points = list(self._points)
            alarms = [dict(a) for a in self._alarms]
        models = []
        for s in self.monitor.states():
            models.append(
                {
                    "model": s.model,
                    "version": s.version,
                    "reference_source": s.reference_source,
                    "reference_origin": s.reference_origin,
                    "reference_segments": s.reference_segments,
                    "learn_segments": s.learn_segments,
                    "reference_created": s.profile_created,
                    "estimated_wer": None if math.isnan(s.estimated_wer) else s.estimated_wer,
                    "features": [
                        {
                            "feature": f.feature,
                            "side": f.side,
                            "reference": f.reference,
                            "short": _finite(f.current.get("short")),
                            "long": _finite(f.current.get("long")),
                            "score_short": _finite(f.scores["short"].psi) if "short" in f.scores else None,
                            "score_long": _finite(f.scores["long"].psi) if "long" in f.scores else None,
                            "p_short": _finite(f.scores["short"].p_value) if "short" in f.scores else None,
                            "p_long": _finite(f.scores["long"].p_value) if "long" in f.scores else None,
                            "alarm": f.alarm,
                        }
                        for f in s.features
                    ],
                }
            )
        drift = self.thresholds.drift
        return {
            "points": points,
            "alarms": alarms,
            "models": models,
            "deployments": [asdict(d) for d in self.source.deployments()],
            "drift_settings": {
                "short_window": drift.short_window,
                "long_window": drift.long_window,
                "psi_short": drift.psi_short,
                "psi_long": drift.psi_long,
                "p_value": drift.p_value,
            },
            "thresholds_source": self.thresholds.source,
        }


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)

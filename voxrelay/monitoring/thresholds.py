"""The thresholds file: drift detector settings and one entry per alert (YAML, defaults shipped).

:func:`load_thresholds` reads a user file over the shipped defaults (``thresholds.yaml`` beside this
module): a file may give only some entries. Every problem is one :class:`InvalidArgument` naming the
file and the field (``thresholds.yaml: alerts.error_ratio.for: '5 minutes' is not a duration``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from voxrelay.errors import InvalidArgument
from voxrelay.monitoring.features import EDGE_BY_NAME, NAMES

SEVERITIES = ("page", "ticket", "warning", "info")
ALERTS = (
    "error_ratio",
    "e2e_latency_p95",
    "queue_wait_p95",
    "real_time_factor",
    "empty_transcript_ratio",
    "hallucination_ratio",
    "vad_false_positive_ratio",
    "edge_input_dead",
    "edge_clipping",
    "spool_age",
    "spool_drops",
    "resource_exhausted_rate",
    "input_drift",
    "output_drift",
    "edge_input_drift",
    "estimated_wer",
    "no_traffic",
    "target_down",
)
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * _SECONDS[match.group(2)]


@dataclass(frozen=True)
class DriftSettings:
    short_window: int = 20
    long_window: int = 200
    min_segments: int = 10
    score_interval_seconds: float = 5.0
    psi_short: float = 1.0
    psi_long: float = 0.25
    p_value: float = 1e-5
    consecutive: int = 2
    learn_segments: int = 200
    ignore: tuple[str, ...] = ()

    SECTION: ClassVar[str] = "drift"
    FEATURES: ClassVar[tuple[str, ...]] = NAMES

    def __post_init__(self) -> None:
        if not 2 <= self.short_window < self.long_window:
            raise InvalidArgument(
                f"{self.SECTION}.short_window: {self.short_window} must be at least 2 and below long_window "
                f"({self.long_window})"
            )
        if self.long_window > 100_000:
            raise InvalidArgument(
                f"{self.SECTION}.long_window: {self.long_window} is over the limit of 100000 segments"
            )
        if not 2 <= self.min_segments <= self.short_window:
            raise InvalidArgument(f"{self.SECTION}.min_segments: {self.min_segments} must lie in 2..short_window")
        if not 0.05 <= self.score_interval_seconds <= 3600:
            raise InvalidArgument(
                f"{self.SECTION}.score_interval_seconds: {self.score_interval_seconds} is out of range (0.05..3600)"
            )
        for name in ("psi_short", "psi_long"):
            if not getattr(self, name) > 0:
                raise InvalidArgument(f"{self.SECTION}.{name}: {getattr(self, name)} must be positive")
        if not 0 < self.p_value < 1:
            raise InvalidArgument(f"{self.SECTION}.p_value: {self.p_value} must lie between 0 and 1")
        if not 1 <= self.consecutive <= 100:
            raise InvalidArgument(f"{self.SECTION}.consecutive: {self.consecutive} is out of range (1..100)")
        if self.learn_segments < 20:
            raise InvalidArgument(f"{self.SECTION}.learn_segments: {self.learn_segments} must be at least 20")
        for name in self.ignore:
            if name not in self.FEATURES:
                raise InvalidArgument(f"{self.SECTION}.ignore: {name!r} is not a feature ({', '.join(self.FEATURES)})")


@dataclass(frozen=True)
class EdgeDriftSettings(DriftSettings):
    """The edge's drift detector (``edge_drift:``): windows count segments and stream chunks alike."""

    psi_short: float = 1.5
    learn_segments: int = 100
    stream_seconds: float = 2.0

    SECTION: ClassVar[str] = "edge_drift"
    FEATURES: ClassVar[tuple[str, ...]] = tuple(EDGE_BY_NAME)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.5 <= self.stream_seconds <= 60:
            raise InvalidArgument(f"edge_drift.stream_seconds: {self.stream_seconds} is out of range (0.5..60)")


@dataclass(frozen=True)
class Alert:
    key: str
    threshold: float
    for_: str
    severity: str
    summary: str
    action: str


@dataclass(frozen=True)
class Thresholds:
    drift: DriftSettings
    alerts: dict[str, Alert]
    source: str = "defaults"
    edge_drift: EdgeDriftSettings = dataclasses.field(default_factory=EdgeDriftSettings)

    def alert(self, key: str) -> Alert:
        return self.alerts[key]


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{where}: expected a number, found {value!r:.40}")
    return float(value)


def _drift(where: str, data: Any, base: DriftSettings) -> DriftSettings:
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where}: expected a mapping of settings")
    known = {f.name: f for f in fields(base)}
    values: dict[str, Any] = {f: getattr(base, f) for f in known}
    for key, value in data.items():
        if key not in known:
            raise InvalidArgument(f"{where}.{key}: not a drift setting ({', '.join(known)})")
        if key == "ignore":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidArgument(f"{where}.ignore: expected a list of feature names")
            values[key] = tuple(value)
        elif key in ("short_window", "long_window", "min_segments", "consecutive", "learn_segments"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{where}.{key}: expected a whole number, found {value!r:.40}")
            values[key] = value
        else:
            values[key] = _number(f"{where}.{key}", value)
    try:
        return type(base)(**values)
    except InvalidArgument as err:  # name the file too
        raise InvalidArgument(f"{where.rsplit(': ', 1)[0]}: {err.message}") from err


def _alert(where: str, key: str, data: Any, base: Alert | None) -> Alert:
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where}: expected a mapping with threshold, for, severity, summary, action")
    allowed = {"threshold", "for", "severity", "summary", "action"}
    for field in data:
        if field not in allowed:
            raise InvalidArgument(f"{where}.{field}: not an alert field ({', '.join(sorted(allowed))})")
    merged: dict[str, Any] = {}
    if base is not None:
        merged = {
            "threshold": base.threshold,
            "for": base.for_,
            "severity": base.severity,
            "summary": base.summary,
            "action": base.action,
        }
    merged.update(data)
    for field in sorted(allowed):
        if field not in merged:
            raise InvalidArgument(f"{where}.{field}: missing")
    threshold = _number(f"{where}.threshold", merged["threshold"])
    duration = merged["for"]
    if isinstance(duration, int) and not isinstance(duration, bool):
        duration = f"{duration}s"
    if not isinstance(duration, str) or not _DURATION.match(duration):
        raise InvalidArgument(f"{where}.for: {duration!r} is not a duration (like 30s, 5m, 1h)")
    severity = merged["severity"]
    if severity not in SEVERITIES:
        raise InvalidArgument(f"{where}.severity: {severity!r} is not one of {', '.join(SEVERITIES)}")
    for field in ("summary", "action"):
        if not isinstance(merged[field], str) or not merged[field].strip():
            raise InvalidArgument(f"{where}.{field}: expected text saying what it means and what to do")
    return Alert(key, threshold, duration, severity, merged["summary"].strip(), " ".join(merged["action"].split()))


def parse_thresholds(data: Any, where: str, base: Thresholds | None = None) -> Thresholds:
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where}: expected a YAML mapping with drift and alerts")
    for key in data:
        if key not in ("version", "drift", "edge_drift", "alerts"):
            raise InvalidArgument(f"{where}: {key}: not a section (version, drift, edge_drift, alerts)")
    if data.get("version", 1) != 1:
        raise InvalidArgument(f"{where}: version: {data.get('version')!r} is not supported (1)")
    drift = _drift(f"{where}: drift", data.get("drift") or {}, base.drift if base else DriftSettings())
    edge_drift = _drift(
        f"{where}: edge_drift", data.get("edge_drift") or {}, base.edge_drift if base else EdgeDriftSettings()
    )
    assert isinstance(edge_drift, EdgeDriftSettings)
    alerts_data = data.get("alerts") or {}
    if not isinstance(alerts_data, dict):
        raise InvalidArgument(f"{where}: alerts: expected a mapping of alert names")
    alerts = dict(base.alerts) if base else {}
    for key, entry in alerts_data.items():
        if key not in ALERTS:
            raise InvalidArgument(f"{where}: alerts.{key}: not a known alert ({', '.join(ALERTS)})")
        alerts[key] = _alert(f"{where}: alerts.{key}", key, entry, alerts.get(key))
    missing = [k for k in ALERTS if k not in alerts]
    if missing:
        raise InvalidArgument(f"{where}: alerts.{missing[0]}: missing")
    return Thresholds(drift, alerts, where, edge_drift)


def _read_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InvalidArgument(f"{where}: not valid YAML{at}: {problem}") from err


def default_thresholds() -> Thresholds:
    text = resources.files("voxrelay.monitoring").joinpath("thresholds.yaml").read_text(encoding="utf-8")
    return parse_thresholds(_read_yaml(text, "thresholds.yaml"), "defaults")


def load_thresholds(path: str | Path | None) -> Thresholds:
    """The shipped defaults, overridden by the file at ``path`` (None: the defaults alone)."""
    defaults = default_thresholds()
    if path is None:
        return defaults
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidArgument(f"{where}: cannot read the thresholds file: {err.strerror or err}") from err
    return parse_thresholds(_read_yaml(text, where), where, defaults)


def default_thresholds_text() -> str:
    return resources.files("voxrelay.monitoring").joinpath("thresholds.yaml").read_text(encoding="utf-8")

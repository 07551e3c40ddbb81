"""The monitors' Prometheus metrics, defined once against an injected registry.

- ``voxrelay_drift_score{model,feature,window}``: the PSI of the window against the reference (the
  drift score the alarm compares with ``psi_short`` / ``psi_long``);
- ``voxrelay_drift_p_value{model,feature,window}``: the window's significance (KS, binomial, chi-square);
- ``voxrelay_drift_ks_statistic`` and ``voxrelay_drift_wasserstein{model,feature,window}`` (continuous
  features; Wasserstein in units of the reference's interquartile range);
- ``voxrelay_drift_alarm{model,feature,side}``: 1 while the feature drifts;
- ``voxrelay_drift_reference_segments{model,source}``: segments behind the reference (source: profile
  kind, "learned", or "learning" with the count so far);
- ``voxrelay_asr_estimated_wer{model}``: the label-free WER estimate over the long window;
- ``voxrelay_monitor_*``: the monitors' own cost and any segments they had to skip.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from voxrelay.monitoring.features import BY_NAME


class MonitorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.score = Gauge(
            "voxrelay_drift_score",
            "Drift score: population stability index of the window against the reference's fixed bins",
            ["model", "feature", "window"],
            registry=r,
        )
        self.p_value = Gauge(
            "voxrelay_drift_p_value",
            "Significance of the window's difference from the reference (KS, binomial or chi-square test)",
            ["model", "feature", "window"],
            registry=r,
        )
        self.ks = Gauge(
            "voxrelay_drift_ks_statistic",
            "Two-sample Kolmogorov-Smirnov statistic of the window against the reference",
            ["model", "feature", "window"],
            registry=r,
        )
        self.wasserstein = Gauge(
            "voxrelay_drift_wasserstein",
            "Wasserstein distance of the window from the reference, in reference interquartile ranges",
            ["model", "feature", "window"],
            registry=r,
        )
        self.alarm = Gauge(
            "voxrelay_drift_alarm",
            "1 while a feature drifts from the reference (see the thresholds file)",
            ["model", "feature", "side"],
            registry=r,
        )
        self.reference = Gauge(
            "voxrelay_drift_reference_segments",
            "Segments behind the reference: source is the profile's kind (manifest, folder, batch), learned, "
            "or learning (the count so far)",
            ["model", "source"],
            registry=r,
        )
        self.estimated_wer = Gauge(
            "voxrelay_asr_estimated_wer",
            "Label-free WER estimate from Whisper's confidence signals (calibrated by voxrelay eval), long window",
            ["model"],
            registry=r,
        )
        self.observed = Counter(
            "voxrelay_monitor_segments_total", "Segments the monitors measured", ["model"], registry=r
        )
        self.skipped = Counter(
            "voxrelay_monitor_skipped_segments_total",
            "Segments the monitors skipped because their queue was full (they never slow requests down)",
            registry=r,
        )
        self.cpu = Counter(
            "voxrelay_monitor_cpu_seconds_total", "CPU time of the monitors' thread (features and scoring)", registry=r
        )
        self.scorings = Counter("voxrelay_monitor_scorings_total", "Scoring rounds", registry=r)

    def start(self, model: str, features: tuple[str, ...]) -> None:
        """Series that start at zero, so that a scrape shows them before the first scoring."""
        for name in features:
            self.alarm.labels(model=model, feature=name, side=BY_NAME[name].side).set(0)
        self.observed.labels(model=model)

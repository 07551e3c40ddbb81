"""The rollout's Prometheus metrics, on the service's registry.

- ``voxrelay_deployment_info{deployment,model,version,backend,role,automation}`` 1 per loaded deployment;
- ``voxrelay_canary_weight{deployment}``: percent of devices the candidate serves (0 when it does not);
- ``voxrelay_shadow_mirror_percent{deployment}``: percent of segments a shadow also recognises;
- ``voxrelay_analysis_result{check,result}``: 1 for the latest result of each check, 0 for the others
  (``check="overall"`` for the interval); ``voxrelay_analysis_checks_total{check,result}`` counts them;
- ``voxrelay_shadow_disagreement_wer{deployment}``: the shadow's disagreement WER over the last window;
- ``voxrelay_shadow_segments_total{deployment,outcome}``: ``compared``, ``failed``, ``dropped_load``,
  ``dropped_backlog``, ``dropped_stale``;
- ``voxrelay_rollout_decisions_total{action}``: shadow, canary, step, promote, switch, rollback,
  auto-rollback...;
- ``voxrelay_deployment_results_total{deployment,role,outcome}``: ``ok`` or ``error``, per deployment.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from voxrelay.cloud.rollout.analysis import CHECKS, AnalysisResult, Verdict

SHADOW_OUTCOMES = ("compared", "failed", "dropped_load", "dropped_backlog", "dropped_stale")


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.info = Gauge(
            "voxrelay_deployment_info",
            "Loaded deployments (1 each) with their model, weights version, backend, role and automation",
            ["deployment", "model", "version", "backend", "role", "automation"],
            registry=registry,
        )
        self.weight = Gauge(
            "voxrelay_canary_weight", "Percent of devices the canary serves", ["deployment"], registry=registry
        )
        self.mirror = Gauge(
            "voxrelay_shadow_mirror_percent",
            "Percent of the stable's segments the shadow also recognises",
            ["deployment"],
            registry=registry,
        )
        self.result = Gauge(
            "voxrelay_analysis_result",
            "Latest analysis: 1 for the result each check (and the interval, check=overall) ended with",
            ["check", "result"],
            registry=registry,
        )
        self.checks = Counter(
            "voxrelay_analysis_checks_total", "Analysis checks by outcome", ["check", "result"], registry=registry
        )
        self.disagreement = Gauge(
            "voxrelay_shadow_disagreement_wer",
            "WER of the shadow's transcripts against the stable's on the same segments, last analysis window",
            ["deployment"],
            registry=registry,
        )
        self.shadow = Counter(
            "voxrelay_shadow_segments_total",
            "Segments offered to a shadow, by outcome (compared, failed, dropped_load, dropped_backlog, dropped_stale)",
            ["deployment", "outcome"],
            registry=registry,
        )
        self.decisions = Counter(
            "voxrelay_rollout_decisions_total", "Rollout changes by action", ["action"], registry=registry
        )
        self.results = Counter(
            "voxrelay_deployment_results_total",
            "Segments and utterances each deployment handled, by role and outcome (ok, error)",
            ["deployment", "role", "outcome"],
            registry=registry,
        )
        for check in (*CHECKS, "overall"):
            for verdict in Verdict:
                self.result.labels(check=check, result=verdict.value).set(0)

    def deployments(self, rows: Iterable[tuple[str, str, str, str, str, str]]) -> None:
        """Replace the info series with ``rows`` of (deployment, model, version, backend, role, automation)."""
        self.info.clear()
        for row in rows:
            self.info.labels(*row).set(1)

    def rollout(self, loaded: Iterable[str], candidate: str | None, weight: float, mirror: float) -> None:
        self.weight.clear()
        self.mirror.clear()
        for name in loaded:
            self.weight.labels(deployment=name).set(weight if name == candidate else 0.0)
            self.mirror.labels(deployment=name).set(mirror if name == candidate else 0.0)
        if candidate is None:
            self.disagreement.clear()

    def analysed(self, result: AnalysisResult, shadow: str | None, disagreement: float | None) -> None:
        seen = {c.check: c.verdict for c in result.checks}
        seen["overall"] = result.verdict
        for check, verdict in seen.items():
            for v in Verdict:
                self.result.labels(check=check, result=v.value).set(1 if v is verdict else 0)
            self.checks.labels(check=check, result=verdict.value).inc()
        if shadow is not None and disagreement is not None:
            self.disagreement.labels(deployment=shadow).set(disagreement)

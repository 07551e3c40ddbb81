"""Judging a candidate against the stable on the same window of traffic: pure functions over samples.

Each interval, every check compares the candidate's samples with the stable's (the *baseline*) over
the same window and ends ``pass``, ``fail`` or ``inconclusive``. Too few samples on either side is
inconclusive, never a pass: a candidate that saw no traffic has proven nothing (Argo Rollouts'
``inconclusiveLimit``, Flagger's skipped analysis). An interval *fails* when any check fails, *passes*
when every check passes, and is inconclusive otherwise.

Checks:

- ``error_ratio``: share of segments that failed, candidate minus baseline;
- ``latency_p95``: 95th percentile of the server's time per segment (queue wait + inference; for a shadow,
  inference alone, as it waits on purpose), candidate over baseline;
- ``empty_ratio``: share of results with no text, candidate minus baseline;
- ``avg_logprob``: mean of Whisper's confidence over results with text, baseline minus candidate;
- ``estimated_wer``: word-weighted mean of the label-free per-segment WER estimate, candidate minus baseline;
- ``disagreement_wer`` (shadow): WER of the candidate's transcript against the stable's on the same
  segments, word-weighted (a label-free accuracy signal: two models that disagree cannot both be right).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from voxrelay.cloud.rollout.config import Thresholds

CHECKS = ("error_ratio", "latency_p95", "empty_ratio", "avg_logprob", "estimated_wer", "disagreement_wer")


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Sample:
    """One segment a deployment handled."""

    at: float  # monotonic seconds
    ok: bool
    latency: float = 0.0  # the server's time: queue wait + inference
    inference: float = 0.0
    empty: bool = False
    avg_logprob: float = 0.0
    estimated_wer: float | None = None
    words: int = 0


@dataclass(frozen=True)
class Comparison:
    """A shadowed segment: the candidate's word errors against the stable's transcript."""

    at: float
    errors: int
    words: int  # in the stable's transcript


@dataclass(frozen=True)
class CheckResult:
    check: str
    verdict: Verdict
    candidate: float | None  # the candidate's figure (None: not enough samples)
    baseline: float | None
    limit: str  # the rule, in words
    samples: tuple[int, int]  # candidate, baseline
    note: str = ""

    def describe(self) -> str:
        if self.candidate is None and self.baseline is None:
            return f"{self.check} {self.verdict.value}: {self.note} ({self.samples[0]}/{self.samples[1]} samples)"

        def fmt(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        base = "" if self.check == "disagreement_wer" else f" vs stable {fmt(self.baseline)}"
        extra = f"; {self.note}" if self.note else ""
        return (
            f"{self.check} {self.verdict.value}: candidate {fmt(self.candidate)}{base} ({self.limit}; "
            f"{self.samples[0]}/{self.samples[1]} samples){extra}"
        )


@dataclass(frozen=True)
class AnalysisResult:
    verdict: Verdict
    checks: tuple[CheckResult, ...]

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.verdict is Verdict.FAIL)

    def describe(self) -> str:
        return "; ".join(c.describe() for c in self.checks)


class SampleWindow:
    """Recent samples of one deployment, bounded by age and count; thread-safe."""

    def __init__(self, keep_seconds: float, max_samples: int = 20_000) -> None:
        self.keep_seconds = keep_seconds
        self._samples: deque[Sample] = deque(maxlen=max_samples)
        self._comparisons: deque[Comparison] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def add(self, sample: Sample) -> None:
        with self._lock:
            self._samples.append(sample)
            self._trim(self._samples, sample.at)

    def compare(self, comparison: Comparison) -> None:
        with self._lock:
            self._comparisons.append(comparison)
            self._trim(self._comparisons, comparison.at)

    def _trim(self, items: deque, now: float) -> None:  # type: ignore[type-arg]
        while items and items[0].at < now - self.keep_seconds:
            items.popleft()

    def samples(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self._samples if start <= s.at <= end]

    def comparisons(self, start: float, end: float) -> list[Comparison]:
        with self._lock:
            return [c for c in self._comparisons if start <= c.at <= end]


def _enough(candidate: Sequence[object], baseline: Sequence[object] | None, min_samples: int) -> bool:
    return len(candidate) >= min_samples and (baseline is None or len(baseline) >= min_samples)


def _counts(candidate: Sequence[object], baseline: Sequence[object]) -> tuple[int, int]:
    return len(candidate), len(baseline)


def _too_few(check: str, limit: str, counts: tuple[int, int], min_samples: int) -> CheckResult:
    return CheckResult(check, Verdict.INCONCLUSIVE, None, None, limit, counts, f"fewer than {min_samples} samples")


def check_error_ratio(cand: Sequence[Sample], base: Sequence[Sample], limit: float, min_samples: int) -> CheckResult:
    rule = f"at most {limit:g} above the stable's"
    if not _enough(cand, base, min_samples):
        return _too_few("error_ratio", rule, _counts(cand, base), min_samples)
    c = sum(not s.ok for s in cand) / len(cand)
    b = sum(not s.ok for s in base) / len(base)
    verdict = Verdict.FAIL if c - b > limit + 1e-12 else Verdict.PASS
    return CheckResult("error_ratio", verdict, c, b, rule, _counts(cand, base))


def check_latency(cand: Sequence[Sample], base: Sequence[Sample], ratio: float, min_samples: int) -> CheckResult:
    rule = f"p95 at most {ratio:g}× the stable's"
    c_ok = [s.latency for s in cand if s.ok]
    b_ok = [s.latency for s in base if s.ok]
    if not _enough(c_ok, b_ok, min_samples):
        return _too_few("latency_p95", rule, (len(c_ok), len(b_ok)), min_samples)
    c = float(np.percentile(c_ok, 95))
    b = float(np.percentile(b_ok, 95))
    verdict = Verdict.FAIL if c > ratio * b + 1e-9 else Verdict.PASS
    return CheckResult("latency_p95", verdict, c, b, rule, (len(c_ok), len(b_ok)))


def check_empty(cand: Sequence[Sample], base: Sequence[Sample], limit: float, min_samples: int) -> CheckResult:
    rule = f"at most {limit:g} above the stable's"
    c_ok = [s for s in cand if s.ok]
    b_ok = [s for s in base if s.ok]
    if not _enough(c_ok, b_ok, min_samples):
        return _too_few("empty_ratio", rule, (len(c_ok), len(b_ok)), min_samples)
    c = sum(s.empty for s in c_ok) / len(c_ok)
    b = sum(s.empty for s in b_ok) / len(b_ok)
    verdict = Verdict.FAIL if c - b > limit + 1e-12 else Verdict.PASS
    return CheckResult("empty_ratio", verdict, c, b, rule, (len(c_ok), len(b_ok)))


def check_logprob(cand: Sequence[Sample], base: Sequence[Sample], limit: float, min_samples: int) -> CheckResult:
    rule = f"mean at most {limit:g} below the stable's"
    c_t = [s.avg_logprob for s in cand if s.ok and not s.empty]
    b_t = [s.avg_logprob for s in base if s.ok and not s.empty]
    if not _enough(c_t, b_t, min_samples):
        return _too_few("avg_logprob", rule, (len(c_t), len(b_t)), min_samples)
    c, b = float(np.mean(c_t)), float(np.mean(b_t))
    verdict = Verdict.FAIL if b - c > limit + 1e-12 else Verdict.PASS
    return CheckResult("avg_logprob", verdict, c, b, rule, (len(c_t), len(b_t)))


def _weighted_wer(samples: Iterable[Sample]) -> tuple[float | None, int]:
    rated = [s for s in samples if s.ok and not s.empty and s.estimated_wer is not None]
    if not rated:
        return None, 0
    weights = np.array([max(1, s.words) for s in rated], dtype=float)
    values = np.array([s.estimated_wer for s in rated], dtype=float)
    return float((weights * values).sum() / weights.sum()), len(rated)


def check_estimated_wer(cand: Sequence[Sample], base: Sequence[Sample], limit: float, min_samples: int) -> CheckResult:
    rule = f"at most {limit:g} above the stable's"
    c, nc = _weighted_wer(cand)
    b, nb = _weighted_wer(base)
    if c is None or b is None or not (nc >= min_samples and nb >= min_samples):
        return _too_few("estimated_wer", rule, (nc, nb), min_samples)
    verdict = Verdict.FAIL if c - b > limit + 1e-12 else Verdict.PASS
    return CheckResult("estimated_wer", verdict, c, b, rule, (nc, nb))


def disagreement(comparisons: Sequence[Comparison]) -> float | None:
    """Word-weighted disagreement WER of ``comparisons`` (None without a word to compare)."""
    words = sum(c.words for c in comparisons)
    if not words:
        return None
    return sum(c.errors for c in comparisons) / words


def check_disagreement(comparisons: Sequence[Comparison], limit: float, min_samples: int) -> CheckResult:
    rule = f"at most {limit:g}"
    value = disagreement(comparisons)
    if len(comparisons) < min_samples or value is None:
        return CheckResult(
            "disagreement_wer",
            Verdict.INCONCLUSIVE,
            value,
            None,
            rule,
            (len(comparisons), 0),
            f"fewer than {min_samples} compared segments",
        )
    verdict = Verdict.FAIL if value > limit + 1e-12 else Verdict.PASS
    return CheckResult("disagreement_wer", verdict, value, None, rule, (len(comparisons), 0))


def analyse(
    candidate: Sequence[Sample],
    baseline: Sequence[Sample],
    thresholds: Thresholds,
    min_samples: int,
    *,
    comparisons: Sequence[Comparison] | None = None,
    estimated: bool = True,
) -> AnalysisResult:
    """Every enabled check on one window. ``comparisons``: the shadowed segments (shadow only);
    ``estimated``: whether samples carry a WER estimate (the check is left out otherwise)."""
    t = thresholds
    results: list[CheckResult] = []
    if t.error_ratio_increase is not None:
        results.append(check_error_ratio(candidate, baseline, t.error_ratio_increase, min_samples))
    if t.latency_p95_ratio is not None:
        results.append(check_latency(candidate, baseline, t.latency_p95_ratio, min_samples))
    if t.empty_ratio_increase is not None:
        results.append(check_empty(candidate, baseline, t.empty_ratio_increase, min_samples))
    if t.avg_logprob_decrease is not None:
        results.append(check_logprob(candidate, baseline, t.avg_logprob_decrease, min_samples))
    if t.estimated_wer_increase is not None and estimated:
        results.append(check_estimated_wer(candidate, baseline, t.estimated_wer_increase, min_samples))
    if t.disagreement_wer is not None and comparisons is not None:
        results.append(check_disagreement(comparisons, t.disagreement_wer, min_samples))
    return AnalysisResult(overall(results), tuple(results))


def overall(results: Sequence[CheckResult]) -> Verdict:
    if any(r.verdict is Verdict.FAIL for r in results):
        return Verdict.FAIL
    if results and all(r.verdict is Verdict.PASS for r in results):
        return Verdict.PASS
    return Verdict.INCONCLUSIVE

"""Drift detection for one model deployment: two windows per feature, scored against its reference.

:meth:`DriftDetector.add` is O(1) per feature (a ring-buffer write); :meth:`DriftDetector.score`
compares each window holding at least ``min_segments`` values with the reference and updates each
feature's alarm. Without a profile the first ``learn_segments`` segments become the reference.
Not thread-safe: the :class:`~voxrelay.monitoring.monitor.Monitor` calls it from its one thread.

The recognizer scores with scipy's tests (:mod:`.stats`, imported when first needed); an edge passes
its own feature table and :class:`BoundScorer`, which needs numpy alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voxrelay.monitoring.binning import Score, Window, score_continuous_bound
from voxrelay.monitoring.features import BY_NAME, CATEGORICAL, CONTINUOUS, RATE, Feature
from voxrelay.monitoring.profile import OTHER, FeatureReference, ModelRef, ReferenceProfile, build_profile
from voxrelay.monitoring.thresholds import DriftSettings

WINDOWS = ("short", "long")


class Scorer(Protocol):
    def __call__(self, ref: FeatureReference, values: np.ndarray) -> Score: ...


def scipy_scorer(ref: FeatureReference, values: np.ndarray) -> Score:
    """The recognizer's scoring: KS and Wasserstein, binomial and chi-square tests (scipy), and PSI."""
    from voxrelay.monitoring.stats import score_categorical, score_continuous, score_rate

    if ref.kind == CONTINUOUS:
        return score_continuous(
            np.asarray(ref.sample), np.asarray(ref.edges), np.asarray(ref.proportions), ref.scale, values
        )
    if ref.kind == RATE:
        return score_rate(ref.rate, ref.n, values)
    return score_categorical(np.asarray(ref.proportions), ref.n, values)


def bound_scorer(ref: FeatureReference, values: np.ndarray) -> Score:
    """The edge's scoring (continuous features only): PSI, and the KS statistic with its p-value bound."""
    if ref.kind != CONTINUOUS:
        raise ValueError(f"the edge scores continuous features only, not {ref.kind}")
    return score_continuous_bound(np.asarray(ref.sample), np.asarray(ref.edges), np.asarray(ref.proportions), values)


@dataclass(frozen=True)
class FeatureState:
    """What the dashboard and GetInfo show for one feature."""

    feature: str
    side: str
    reference: str
    reference_value: float
    current: dict[str, float]  # window -> median / rate of the window
    scores: dict[str, Score]
    alarm: bool


class DriftDetector:
    def __init__(
        self,
        model: ModelRef,
        settings: DriftSettings,
        profile: ReferenceProfile | None = None,
        learn_forever: bool = False,
        table: Mapping[str, Feature] = BY_NAME,
        scorer: Scorer = scipy_scorer,
        scope: str = "server",
    ) -> None:
        self.model = model
        self.settings = settings
        self.table = table
        self.scorer = scorer
        self.scope = scope
        self.features = tuple(n for n in table if n not in settings.ignore)
        self.windows = {n: {w: Window(self._size(w)) for w in WINDOWS} for n in self.features}
        self.profile = profile
        self.learning: dict[str, list[float | str]] | None = None if profile else {n: [] for n in self.features}
        self.learned_segments = 0
        self.learn_forever = learn_forever
        self.scores: dict[str, dict[str, Score]] = {}
        self.alarms: dict[str, bool] = dict.fromkeys(self.features, False)
        self._streak: dict[str, int] = dict.fromkeys(self.features, 0)
        self._codes: dict[str, dict[str, int]] = {}
        if profile is not None:
            self._index_categories(profile)

    def _size(self, window: str) -> int:
        return self.settings.short_window if window == "short" else self.settings.long_window

    def _index_categories(self, profile: ReferenceProfile) -> None:
        for name, ref in profile.features.items():
            if ref.kind == CATEGORICAL:
                self._codes[name] = {c: i for i, c in enumerate(ref.categories)}

    @property
    def reference_source(self) -> str:
        if self.profile is None:
            return "learning"
        return self.profile.source

    def add(self, values: dict[str, float | str], segment: bool = True) -> None:
        """One segment's feature values (``segment=False``: values of something else, such as an edge's
        stream chunk, which the count of segments learned leaves out)."""
        if self.learning is not None:
            for name, value in values.items():
                if name in self.learning:
                    self.learning[name].append(value)
            self.learned_segments += 1 if segment else 0
            if not self.learn_forever and self.learned_segments >= self.settings.learn_segments:
                self.finish_learning(f"the first {self.learned_segments} segments served")
        for name, value in values.items():
            windows = self.windows.get(name)
            if windows is None:
                continue
            if isinstance(value, str):
                codes = self._codes.get(name)
                if codes is None:  # categories are known once there is a reference
                    continue
                number = float(codes.get(value, codes[OTHER]))
            else:
                number = float(value)
            if not math.isfinite(number):
                continue
            for window in windows.values():
                window.add(number)

    def learned_profile(self, source: str, origin: str) -> ReferenceProfile:
        """A profile of the segments learned so far."""
        if self.learning is None:
            raise ValueError("not learning")
        return build_profile(self.learning, self.model, source, origin, self.learned_segments, self.scope)

    def finish_learning(self, origin: str) -> None:
        """Make what was learned so far the reference (``origin`` says what it was learned from)."""
        self.profile = self.learned_profile("learned", origin)
        self._index_categories(self.profile)
        self.learning = None

    def score(self) -> None:
        """Score every window that holds enough values and update the alarms."""
        profile = self.profile
        if profile is None:
            return
        s = self.settings
        for name in self.features:
            ref = profile.features.get(name)
            if ref is None:
                continue
            scores: dict[str, Score] = {}
            for window_name, window in self.windows[name].items():
                if window.count >= s.min_segments:
                    scores[window_name] = self.scorer(ref, window.values())
            self.scores[name] = scores
            drifting = any(
                score.p_value < s.p_value and score.psi > (s.psi_short if w == "short" else s.psi_long)
                for w, score in scores.items()
            )
            streak = self._streak[name]
            if drifting != self.alarms[name]:
                streak += 1
                if streak >= s.consecutive:
                    self.alarms[name] = drifting
                    streak = 0
            else:
                streak = 0
            self._streak[name] = streak

    def medians(self) -> dict[str, float]:
        """The short window's median of each continuous feature (or rate of each rate), reference or not."""
        out = {}
        for name in self.features:
            window = self.windows[name]["short"]
            if window.count and self.table[name].kind != CATEGORICAL:
                values = window.values()
                out[name] = float(np.median(values) if self.table[name].kind == CONTINUOUS else np.mean(values))
        return out

    def firing(self) -> list[str]:
        return [name for name, on in self.alarms.items() if on]

    def states(self) -> list[FeatureState]:
        out = []
        profile = self.profile
        medians = self.medians()
        for name in self.features:
            ref = profile.features.get(name) if profile is not None else None
            scores = self.scores.get(name, {})
            out.append(
                FeatureState(
                    feature=name,
                    side=self.table[name].side,
                    reference=ref.describe()
                    if ref is not None
                    else ("learning" if profile is None else "no data in reference"),
                    reference_value=ref.median if ref is not None else math.nan,
                    current={"short": medians.get(name, math.nan), **{w: sc.current for w, sc in scores.items()}},
                    scores=scores,
                    alarm=self.alarms[name],
                )
            )
        return out

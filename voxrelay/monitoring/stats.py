"""Windows of recent feature values and the statistics that compare them with a reference.

A :class:`Window` is a fixed ring buffer: adding a value is O(1) and allocates nothing. Scoring
compares a window with the reference distribution using scipy's statistics: the two-sample
Kolmogorov-Smirnov test and the Wasserstein distance for continuous features, a binomial test for
rates and a chi-square test for categories, and the population stability index (PSI) over the
reference's fixed bins for all of them.

The tests' distributions are scipy's (``scipy.special.kolmogorov``, ``bdtr``/``bdtrc``, ``chdtrc``),
called directly: ``scipy.stats.ks_2samp`` and ``binomtest`` spend 0.5-2 ms per call in argument
handling, which at 30 windows per scoring would cost more than the rest of the monitors together.
The KS statistic is ks_2samp's (the largest gap between the two empirical distributions), its p-value
the asymptotic Kolmogorov one; the binomial p-value is twice the smaller tail (a little more
conservative than binomtest's). ``tests/test_monitoring.py`` checks them against scipy.stats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from voxrelay.monitoring.features import CATEGORICAL, CONTINUOUS, RATE

# Added to every bin's count before PSI is computed, so that an empty bin does not make it infinite.
PSI_PSEUDOCOUNT = 0.5


class Window:
    """The last ``size`` values of one feature."""

    def __init__(self, size: int) -> None:
        if size < 2:
            raise ValueError("a window holds at least 2 values")
        self.size = size
        self._values = np.zeros(size, dtype=np.float64)
        self._next = 0
        self.count = 0

    def add(self, value: float) -> None:
        self._values[self._next] = value
        self._next = (self._next + 1) % self.size
        if self.count < self.size:
            self.count += 1

    def values(self) -> np.ndarray:
        """A copy of the values held (oldest first)."""
        if self.count < self.size:
            return self._values[: self.count].copy()
        return np.roll(self._values, -self._next)

    def clear(self) -> None:
        self._next = 0
        self.count = 0


@dataclass(frozen=True)
class Score:
    """How far a window is from the reference. ``psi`` is the drift score; ``p_value`` its significance."""

    psi: float
    p_value: float
    ks: float | None = None
    wasserstein: float | None = None
    current: float = math.nan  # the window's median (continuous) or rate / share of the top category


def psi(reference: np.ndarray, observed: np.ndarray) -> float:
    """Population stability index of ``observed`` bin counts against ``reference`` bin proportions."""
    counts = observed.astype(np.float64) + PSI_PSEUDOCOUNT
    current = counts / counts.sum()
    ref = np.maximum(reference.astype(np.float64), 1e-6)
    ref = ref / ref.sum()
    return float(np.sum((current - ref) * np.log(current / ref)))


def bin_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins cut at the interior ``edges`` (open-ended first and last bins)."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)


def ks_2samp(sorted_reference: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic and its asymptotic two-sided p-value (``sorted_reference`` is sorted)."""
    window = np.sort(values)
    both = np.concatenate([sorted_reference, window])
    cdf_reference = np.searchsorted(sorted_reference, both, side="right") / sorted_reference.size
    cdf_window = np.searchsorted(window, both, side="right") / window.size
    d = float(np.max(np.abs(cdf_reference - cdf_window)))
    n, m = sorted_reference.size, window.size
    en = n * m / (n + m)
    return d, float(min(1.0, max(0.0, special.kolmogorov(np.sqrt(en) * d))))


def score_continuous(
    sample: np.ndarray, edges: np.ndarray, proportions: np.ndarray, scale: float, values: np.ndarray
) -> Score:
    statistic, p_value = ks_2samp(sample, values)
    distance = stats.wasserstein_distance(sample, values) / scale if scale > 0 else 0.0
    return Score(
        psi=psi(proportions, bin_counts(edges, values)),
        p_value=p_value,
        ks=statistic,
        wasserstein=float(distance),
        current=float(np.median(values)),
    )


def score_rate(rate: float, n_reference: int, values: np.ndarray) -> Score:
    n = int(values.size)
    hits = int(np.count_nonzero(values > 0.5))
    # The reference rate, smoothed so that a rate never seen in the reference is not "impossible".
    p = (rate * n_reference + 1.0) / (n_reference + 2.0)
    # Two-sided: twice the smaller tail, as binomtest's "central" rule would give.
    low = special.bdtr(hits, n, p)
    high = special.bdtrc(hits - 1, n, p) if hits > 0 else 1.0
    return Score(
        psi=psi(np.array([1.0 - p, p]), np.array([n - hits, hits])),
        p_value=float(min(1.0, 2.0 * min(low, high))),
        current=hits / n if n else math.nan,
    )


def score_categorical(proportions: np.ndarray, n_reference: int, values: np.ndarray) -> Score:
    """``values`` are category codes 0..k-1 (k-1 = a category the reference did not have)."""
    k = proportions.size
    counts = np.bincount(values.astype(np.int64), minlength=k)[:k]
    smoothed = (proportions * n_reference + 1.0) / (n_reference + k)
    expected = smoothed * counts.sum()
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    top = int(np.argmax(proportions))
    return Score(
        psi=psi(smoothed, counts),
        p_value=float(special.chdtrc(k - 1, chi2)),
        current=float(counts[top] / counts.sum()) if counts.sum() else math.nan,
    )


KINDS = (CONTINUOUS, RATE, CATEGORICAL)

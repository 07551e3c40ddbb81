"""The numpy-only half of drift scoring: windows, fixed-bin PSI and the KS statistic.

The edge scores its input drift with these alone (no scipy on the edge); the recognizer's
:mod:`.stats` adds scipy's distributions for exact p-values on top.

A :class:`Window` is a fixed ring buffer: adding a value is O(1) and allocates nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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


def ks_statistic(sorted_reference: np.ndarray, values: np.ndarray) -> float:
    """The two-sample KS statistic (scipy's ks_2samp's): the largest gap between the empirical CDFs."""
    window = np.sort(values)
    both = np.concatenate([sorted_reference, window])
    cdf_reference = np.searchsorted(sorted_reference, both, side="right") / sorted_reference.size
    cdf_window = np.searchsorted(window, both, side="right") / window.size
    return float(np.max(np.abs(cdf_reference - cdf_window)))


def ks_p_bound(d: float, n: int, m: int) -> float:
    """An upper bound of the KS test's two-sided p-value: ``2·exp(−2·(nm/(n+m))·d²)``.

    This is the first term of the asymptotic Kolmogorov series (the Dvoretzky-Kiefer-Wolfowitz bound
    with Massart's constant), which the later terms only lower: a window significant by this bound is
    significant by the asymptotic p-value the recognizer uses (scipy's ``kolmogorov``) too.
    """
    en = n * m / (n + m)
    return float(min(1.0, 2.0 * math.exp(-2.0 * en * d * d)))


def score_continuous_bound(sample: np.ndarray, edges: np.ndarray, proportions: np.ndarray, values: np.ndarray) -> Score:
    """PSI over the reference's fixed bins, with the KS statistic and its p-value bound (numpy only)."""
    d = ks_statistic(sample, values)
    return Score(
        psi=psi(proportions, bin_counts(edges, values)),
        p_value=ks_p_bound(d, sample.size, values.size),
        ks=d,
        current=float(np.median(values)),
    )

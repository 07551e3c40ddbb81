"""Windows of recent feature values and the statistics that compare them with a reference.

Windows, PSI and the KS statistic are :mod:`.binning`'s (numpy only, shared with the edge). Scoring
compares a window with the reference distribution: the two-sample
Kolmogorov-Smirnov test and the Wasserstein distance for continuous features, a binomial test for
rates and a chi-square test for categories, and the population stability index (PSI) over the
reference's fixed bins for all of them.

The tests' distributions are scipy's (``scipy.special.kolmogorov``, ``bdtr``/``bdtrc``, ``chdtrc``),
called directly: ``scipy.stats.ks_2samp`` and ``binomtest`` spend 0.5-2 ms per call in argument
handling, which at 30 windows per scoring would cost more than the rest of the monitors together.
The KS statistic is ks_2samp's (the largest gap between the two empirical distributions), its p-value
the asymptotic Kolmogorov one; the binomial p-value is twice the smaller tail (a little more
conservative than binomtest's). The Wasserstein distance is ``scipy.stats.wasserstein_distance``'s
(the area between the two empirical distribution functions) computed with numpy: importing
``scipy.stats`` would add about 45 MB to the recognizer's memory for that one function.
``tests/test_monitoring.py`` checks them all against scipy.stats.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from voxrelay.monitoring.binning import Score, bin_counts, ks_statistic, psi
from voxrelay.monitoring.features import CATEGORICAL, CONTINUOUS, RATE


def ks_2samp(sorted_reference: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic and its asymptotic two-sided p-value (``sorted_reference`` is sorted)."""
    d = ks_statistic(sorted_reference, values)
    n, m = sorted_reference.size, values.size
    en = n * m / (n + m)
    return d, float(min(1.0, max(0.0, special.kolmogorov(np.sqrt(en) * d))))


def wasserstein_distance(sorted_reference: np.ndarray, values: np.ndarray) -> float:
    """First Wasserstein distance between two samples (``sorted_reference`` is sorted): the area between
    their empirical distribution functions."""
    window = np.sort(values)
    both = np.sort(np.concatenate([sorted_reference, window]))
    cdf_reference = np.searchsorted(sorted_reference, both[:-1], side="right") / sorted_reference.size
    cdf_window = np.searchsorted(window, both[:-1], side="right") / window.size
    return float(np.sum(np.abs(cdf_reference - cdf_window) * np.diff(both)))


def score_continuous(
    sample: np.ndarray, edges: np.ndarray, proportions: np.ndarray, scale: float, values: np.ndarray
) -> Score:
    statistic, p_value = ks_2samp(sample, values)
    distance = wasserstein_distance(sample, values) / scale if scale > 0 else 0.0
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

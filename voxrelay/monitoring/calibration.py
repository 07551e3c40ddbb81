"""A label-free WER estimate: Whisper's confidence signals mapped to expected word errors.

``voxrelay eval`` fits the mapping on labelled data (:func:`fit`) and writes it with its report; the
recognizer loads it (``voxrelay serve --calibration FILE``, or the shipped default fitted on the
development set for tiny.en) and exports ``voxrelay_asr_estimated_wer``: the word-weighted mean of the
per-segment estimates over the long window.

Per segment with text: ``wer ≈ clip(a + b·avg_logprob + c·no_speech_prob + d·max(0, compression_ratio −
2.4), 0, 1)``, fitted by least squares weighted by the reference word count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from voxrelay.errors import InvalidArgument

FORMAT = "voxrelay-wer-calibration"
SIGNALS = ("avg_logprob", "no_speech_prob", "compression_ratio")


@dataclass(frozen=True)
class Calibration:
    intercept: float
    avg_logprob: float
    no_speech_prob: float
    compression_excess: float
    model: str = ""
    utterances: int = 0
    source: str = ""

    def predict(self, avg_logprob: float, no_speech_prob: float, compression_ratio: float) -> float:
        x = (
            self.intercept
            + self.avg_logprob * avg_logprob
            + self.no_speech_prob * no_speech_prob
            + self.compression_excess * max(0.0, compression_ratio - 2.4)
        )
        return min(1.0, max(0.0, x))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1,
            "model": self.model,
            "utterances": self.utterances,
            "coefficients": {
                "intercept": self.intercept,
                "avg_logprob": self.avg_logprob,
                "no_speech_prob": self.no_speech_prob,
                "compression_excess": self.compression_excess,
            },
        }


@dataclass(frozen=True)
class Sample:
    """One labelled utterance: its confidence signals and word errors."""

    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    errors: int
    words: int


def _design(samples: Sequence[Sample]) -> np.ndarray:
    return np.array([[1.0, s.avg_logprob, s.no_speech_prob, max(0.0, s.compression_ratio - 2.4)] for s in samples])


def fit(samples: Sequence[Sample], model: str = "") -> Calibration:
    """Weighted least squares of utterance WER on the signals (weights: reference words)."""
    usable = [s for s in samples if s.words > 0]
    if len(usable) < 5:
        raise InvalidArgument(f"calibration: {len(usable)} labelled utterances with text; at least 5 are needed")
    x = _design(usable)
    y = np.array([s.errors / s.words for s in usable])
    w = np.sqrt(np.array([s.words for s in usable], dtype=float))
    # A small ridge keeps columns that never vary (no compression excess on clean speech) at zero.
    ridge = 1e-3 * np.eye(x.shape[1])
    ridge[0, 0] = 0.0
    xw = x * w[:, None]
    coef = np.linalg.solve(xw.T @ xw + ridge, xw.T @ (y * w))
    return Calibration(float(coef[0]), float(coef[1]), float(coef[2]), float(coef[3]), model, len(usable))


def _auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    if positive.all() or not positive.any():
        return None
    from scipy import stats  # only `voxrelay eval` assesses: the recognizer never loads scipy.stats

    u = stats.mannwhitneyu(scores[positive], scores[~positive], alternative="two-sided").statistic
    return float(u / (positive.sum() * (~positive).sum()))


def assess(samples: Sequence[Sample], model: str = "") -> dict[str, Any]:
    """How well each signal predicts errors, and the fitted estimate checked by leave-one-out."""
    from scipy import stats  # only `voxrelay eval` assesses: the recognizer never loads scipy.stats

    usable = [s for s in samples if s.words > 0]
    if len(usable) < 5:
        return {"utterances": len(usable), "note": "fewer than 5 labelled utterances: no calibration"}
    wer = np.array([s.errors / s.words for s in usable])
    has_errors = np.array([s.errors > 0 for s in usable])
    signals: dict[str, Any] = {}
    for name, sign in (("avg_logprob", -1.0), ("no_speech_prob", 1.0), ("compression_ratio", 1.0)):
        values = np.array([getattr(s, name) for s in usable]) * sign
        rho = stats.spearmanr(values, wer).statistic if np.ptp(values) > 0 and np.ptp(wer) > 0 else math.nan
        signals[name] = {
            "direction": "lower means more errors" if sign < 0 else "higher means more errors",
            "spearman_rho_with_wer": None if math.isnan(rho) else round(float(rho), 3),
            "auroc_any_error": _auroc(values, has_errors),
        }
    calibration = fit(usable, model)
    loo = []
    for i in range(len(usable)):
        rest = usable[:i] + usable[i + 1 :]
        try:
            c = fit(rest, model)
        except InvalidArgument:
            continue
        s = usable[i]
        loo.append(c.predict(s.avg_logprob, s.no_speech_prob, s.compression_ratio))
    words = np.array([s.words for s in usable], dtype=float)
    fitted = np.array([calibration.predict(s.avg_logprob, s.no_speech_prob, s.compression_ratio) for s in usable])
    report: dict[str, Any] = {
        "utterances": len(usable),
        "signals": signals,
        "calibration": calibration.to_json(),
        "pooled_wer": float(sum(s.errors for s in usable) / words.sum()),
        "estimated_wer": float((fitted * words).sum() / words.sum()),
    }
    if len(loo) == len(usable):
        held_out = np.array(loo)
        report["leave_one_out"] = {
            "estimated_wer": float((held_out * words).sum() / words.sum()),
            "mean_absolute_error": float(np.mean(np.abs(held_out - wer))),
            "spearman_rho": round(float(stats.spearmanr(held_out, wer).statistic), 3) if np.ptp(held_out) > 0 else None,
        }
    return report


def parse_calibration(data: Any, where: str) -> Calibration:
    if isinstance(data, dict) and "confidence" in data and isinstance(data["confidence"], dict):
        data = data["confidence"].get("calibration", data)  # an eval report holds it under confidence
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidArgument(f"{where}.format: expected {FORMAT!r}: not a WER calibration (or an eval report)")
    coefficients = data.get("coefficients")
    if not isinstance(coefficients, dict):
        raise InvalidArgument(f"{where}.coefficients: missing")
    values = {}
    for key in ("intercept", "avg_logprob", "no_speech_prob", "compression_excess"):
        value = coefficients.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidArgument(f"{where}.coefficients.{key}: expected a finite number, found {value!r:.40}")
        values[key] = float(value)
    return Calibration(
        **values, model=str(data.get("model", "")), utterances=int(data.get("utterances", 0) or 0), source=where
    )


def load_calibration(path: str | Path | None) -> Calibration:
    """The calibration at ``path`` (a calibration file or an eval report), or the shipped default."""
    if path is None:
        text = resources.files("voxrelay.monitoring").joinpath("calibration_tiny_en.json").read_text("utf-8")
        return parse_calibration(json.loads(text), "default calibration")
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise InvalidArgument(f"{where}: cannot read the calibration: {err.strerror or err}") from err
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"{where}: not JSON (line {err.lineno}: {err.msg})") from err
    return parse_calibration(data, where)

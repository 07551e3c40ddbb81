"""Scoring the runs of an evaluation into its report (a JSON-ready dict).

WER is pooled (total errors / total reference words) per language; the headline WER covers the
languages the model can transcribe (English only for an English-only model such as tiny.en; every
language for a multilingual one) and only utterances that both runs recognised, so that ``asr`` and
``e2e`` are comparable. English uses Whisper's English normaliser, other languages its basic one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from voxrelay.edge.metrics import STAGES
from voxrelay.quality.attribution import NO_ATTRIBUTION, Attribution, attribute, reference_timings
from voxrelay.quality.manifest import Utterance
from voxrelay.quality.runner import FileRun, Latency
from voxrelay.quality.vadscore import VadScore, score_vad, summarize
from voxrelay.quality.wer import NO_ERRORS, WordErrors, word_errors


@dataclass(frozen=True)
class UtteranceScore:
    file: str
    utterance: Utterance
    asr_text: str | None
    e2e_text: str | None
    asr: WordErrors | None
    e2e: WordErrors | None
    attribution: Attribution | None
    error: str | None
    # The recognizer alone's confidence signals: avg_logprob, no_speech_prob, compression_ratio.
    signals: tuple[float, float, float] | None = None


def _nearest(utterances: Sequence[Utterance], t: float, duration: float) -> int:
    def distance(u: Utterance) -> float:
        start, end = u.start or 0.0, duration if u.end is None else u.end
        return max(start - t, 0.0, t - end)

    return min(range(len(utterances)), key=lambda i: distance(utterances[i]))


def e2e_texts(run: FileRun) -> list[str]:
    """The end-to-end hypothesis of each utterance of the file (words go to the nearest utterance)."""
    utterances = run.entry.utterances
    if len(utterances) == 1:
        return [" ".join(r.text for r in run.results if r.text)]
    # Whisper's words carry their own leading space ("600" then ",000"): within one result they are
    # concatenated as they come; results are joined with a space.
    parts: list[list[tuple[int, str]]] = [[] for _ in utterances]
    for i, r in enumerate(run.results):
        if r.words:
            for w in r.words:
                parts[_nearest(utterances, (w.start + w.end) / 2, run.duration)].append((i, w.word))
        elif r.text:
            parts[_nearest(utterances, (r.start + r.end) / 2, run.duration)].append((i, " " + r.text))
    texts = []
    for part in parts:
        pieces = [text if k == 0 or part[k - 1][0] == i else " " + text for k, (i, text) in enumerate(part)]
        texts.append(" ".join("".join(pieces).split()))
    return texts


def score_utterances(run: FileRun) -> list[UtteranceScore]:
    entry = run.entry
    if not entry.utterances:
        return []
    if run.error is not None:
        return [UtteranceScore(entry.name, u, None, None, None, None, None, run.error) for u in entry.utterances]
    segments = [(s.start, s.end) for s in run.segments]
    out = []
    for utterance, alone, e2e_text in zip(entry.utterances, run.alone, e2e_texts(run), strict=True):
        ref, lang = utterance.text, utterance.language
        e2e = word_errors(ref, e2e_text, lang)
        if alone.error is not None:
            out.append(UtteranceScore(entry.name, utterance, None, e2e_text, None, e2e, None, alone.error))
            continue
        bounds = (utterance.start or 0.0, run.duration if utterance.end is None else utterance.end)
        spans = reference_timings(ref, lang, alone.words, bounds)
        attribution = attribute(ref, e2e_text, lang, spans, segments)
        asr = word_errors(ref, alone.text, lang)
        signals = (alone.avg_logprob, alone.no_speech_prob, alone.compression_ratio)
        out.append(UtteranceScore(entry.name, utterance, alone.text, e2e_text, asr, e2e, attribution, None, signals))
    return out


def score_file_vad(run: FileRun, collar: float) -> VadScore | None:
    if run.entry.speech is None or run.error is not None:
        return None
    detected = [(s.start, s.end) for s in run.segments]
    return score_vad(run.entry.speech, detected, run.duration, collar=collar)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def latency_summary(latencies: Sequence[Latency]) -> dict[str, Any]:
    totals = [lat.total for lat in latencies]
    return {
        "p50_s": percentile(totals, 50),
        "p95_s": percentile(totals, 95),
        "segments": len(totals),
        "stages": {
            stage: {"mean_s": float(np.mean(v)), "p95_s": percentile(v, 95)}
            for stage in STAGES
            for v in [[lat.stages[stage] for lat in latencies if stage in lat.stages]]
            if v
        },
    }


def _errors(e: WordErrors) -> dict[str, Any]:
    return {
        "wer": e.wer if e.reference_words else None,
        "reference_words": e.reference_words,
        "substitutions": e.substitutions,
        "deletions": e.deletions,
        "insertions": e.insertions,
    }


def _pool(scores: Iterable[UtteranceScore], which: str) -> WordErrors:
    return sum((getattr(s, which) for s in scores), NO_ERRORS)


def wer_summary(scores: Sequence[UtteranceScore], which: str, headline: set[str] | None, note: str) -> dict[str, Any]:
    """Pooled WER of ``which`` ("asr" or "e2e") over the comparable utterances, headline and per language."""
    comparable = [s for s in scores if s.asr is not None and s.e2e is not None]
    by_language: dict[str, list[UtteranceScore]] = defaultdict(list)
    for s in comparable:
        by_language[s.utterance.language].append(s)
    lead = [s for s in comparable if headline is None or s.utterance.language in headline]
    total = _pool(lead, which)
    return {
        "wer": total.wer if total.reference_words else None,
        "files": len({s.file for s in lead}),
        "utterances": len(lead),
        **{k: v for k, v in _errors(total).items() if k != "wer"},
        "headline": note,
        "by_language": {
            lang: {"utterances": len(group), **_errors(_pool(group, which))}
            for lang, group in sorted(by_language.items())
        },
        "not_scored": [f"{s.file} {s.utterance.id}: {s.error}" for s in scores if s not in comparable],
    }


def attribution_summary(scores: Sequence[UtteranceScore], headline: set[str] | None) -> dict[str, Any]:
    lead = [
        s
        for s in scores
        if s.attribution is not None and s.asr is not None and (headline is None or s.utterance.language in headline)
    ]
    total = sum((s.attribution for s in lead if s.attribution is not None), NO_ATTRIBUTION)
    asr_errors = _pool(lead, "asr").errors
    n = total.reference_words
    return {
        **asdict(total),
        "asr_errors": asr_errors,
        "segmentation_effect": total.recognizer_errors - asr_errors,
        "utterances": len(lead),
        "wer_points": {
            "vad": 100 * total.vad_errors / n if n else None,
            "segmentation": 100 * (total.recognizer_errors - asr_errors) / n if n else None,
        },
        "method": "reference words timed by the recognizer alone (word timestamps); an end-to-end error on a "
        "word less than 90% of whose audio was sent is charged to the VAD, every other error to the recognizer",
    }


def confidence_summary(scores: Sequence[UtteranceScore], model: str) -> dict[str, Any]:
    """How well Whisper's confidence signals predict the recognizer's errors, and the WER calibration fitted on them.

    Every scored utterance counts, in every language: an English-only model given other languages is
    exactly what the label-free estimate has to notice.
    """
    from voxrelay.monitoring.calibration import Sample, assess

    samples = [
        Sample(s.signals[0], s.signals[1], s.signals[2], s.asr.errors, s.asr.reference_words)
        for s in scores
        if s.asr is not None and s.signals is not None
    ]
    report = assess(samples, model)
    report["method"] = (
        "per utterance of the recognizer alone: Spearman's rho of each signal (signed so that higher means "
        "worse) with the utterance's WER, and the AUROC of the signal for 'the utterance has any word error'; "
        "the calibration is a least-squares fit of utterance WER weighted by reference words, checked by "
        "leave-one-out; every language counts"
    )
    return report


def headline_languages(multilingual: bool) -> tuple[set[str] | None, str]:
    if multilingual:
        return None, "all languages (multilingual model)"
    return {"en"}, "English only: the model is English-only; other languages are reported in by_language"


def build_report(
    runs: Sequence[FileRun], *, multilingual: bool, collar: float, context: dict[str, Any], model: str = ""
) -> dict[str, Any]:
    """The report: overall figures first, then one entry per file."""
    headline, note = headline_languages(multilingual)
    utterance_scores = [score_utterances(run) for run in runs]
    vad_scores = [score_file_vad(run, collar) for run in runs]
    flat = [s for scores in utterance_scores for s in scores]
    report: dict[str, Any] = {
        **context,
        "vad": summarize([v for v in vad_scores if v is not None]),
        "asr": wer_summary(flat, "asr", headline, note),
        "e2e": wer_summary(flat, "e2e", headline, note),
        "attribution": attribution_summary(flat, headline),
        "confidence": confidence_summary(flat, model),
        "latency": latency_summary([lat for run in runs for lat in run.latencies]),
        "per_file": [file_entry(r, v, u, headline) for r, v, u in zip(runs, vad_scores, utterance_scores, strict=True)],
    }
    report["vad"]["collar_s"] = collar
    return report


def file_entry(
    run: FileRun, vad: VadScore | None, scores: Sequence[UtteranceScore], headline: set[str] | None
) -> dict[str, Any]:
    entry = run.entry
    lead = [
        s
        for s in scores
        if s.asr is not None and s.e2e is not None and (headline is None or s.utterance.language in headline)
    ]
    asr, e2e = _pool(lead, "asr"), _pool(lead, "e2e")
    return {
        "audio": entry.name,
        "duration_s": round(run.duration, 3),
        "error": run.error,
        "segments": [[round(s.start, 3), round(s.end, 3)] for s in run.segments],
        "forced_splits": sum(s.forced for s in run.segments),
        "segment_errors": [r.error for r in run.results if r.error],
        "speech": [list(r) for r in entry.speech] if entry.speech is not None else None,
        "speech_kind": entry.speech_kind or None,
        "vad": None if vad is None else {k: v for k, v in summarize([vad]).items() if k != "files"},
        "latency": {k: v for k, v in latency_summary(run.latencies).items() if k != "stages"},
        # Pooled over the file's utterances in the headline languages.
        "asr_wer": asr.wer if asr.reference_words else None,
        "e2e_wer": e2e.wer if e2e.reference_words else None,
        "utterances": [
            {
                "id": s.utterance.id,
                "language": s.utterance.language,
                "start": s.utterance.start,
                "end": s.utterance.end,
                "reference": s.utterance.text,
                "asr_text": s.asr_text,
                "e2e_text": s.e2e_text,
                "asr_wer": s.asr.wer if s.asr is not None and s.asr.reference_words else None,
                "e2e_wer": s.e2e.wer if s.e2e is not None and s.e2e.reference_words else None,
                "attribution": asdict(s.attribution) if s.attribution is not None else None,
                "signals": None
                if s.signals is None
                else dict(zip(("avg_logprob", "no_speech_prob", "compression_ratio"), s.signals, strict=True)),
                "error": s.error,
            }
            for s in scores
        ],
    }

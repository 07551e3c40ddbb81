"""Which stage caused an end-to-end word error: the VAD (the word's audio was never sent) or the recognizer.

1. The recognizer alone, on the whole utterance with word timings, tells where each reference word was
   spoken: its normalised words are aligned to the normalised reference, and a reference word takes
   the timing of the word it was aligned with (a word the recognizer missed lies between its
   neighbours).
2. Each reference word's coverage by the VAD's segments is the share of its time span that was sent:
   at least ``SENT`` it was sent, at most ``DROPPED`` it was dropped, in between it was clipped.
3. The end-to-end hypothesis is aligned to the reference. An error (substitution or deletion) on a
   reference word that was dropped or clipped is charged to the VAD; every other error, and every
   insertion, to the recognizer. ``vad + recognizer`` is the end-to-end error count.

The rest of the difference to the recognizer alone is the segmentation effect: how many more (or
fewer) errors the recognizer makes on the VAD's segments than on whole utterances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from voxrelay.quality.wer import normalize

SENT = 0.9
DROPPED = 0.1


@dataclass(frozen=True)
class TimedWord:
    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Attribution:
    reference_words: int
    e2e_errors: int
    vad_errors: int  # errors on reference words the VAD dropped or clipped
    recognizer_errors: int  # errors on words the recognizer received, and insertions
    dropped_words: int  # reference words whose audio was not sent
    clipped_words: int  # reference words only partly sent

    def __add__(self, other: Attribution) -> Attribution:
        return Attribution(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)  # type: ignore[arg-type]
        )


NO_ATTRIBUTION = Attribution(0, 0, 0, 0, 0, 0)


def _alignment(reference: list[str], hypothesis: list[str]) -> list[tuple[str, int, int, int, int]]:
    """jiwer's alignment chunks as (type, ref_start, ref_end, hyp_start, hyp_end)."""
    import jiwer

    out = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    return [(c.type, c.ref_start_idx, c.ref_end_idx, c.hyp_start_idx, c.hyp_end_idx) for c in out.alignments[0]]


def word_statuses(reference: str, hypothesis: str, language: str) -> tuple[list[str], int]:
    """Per normalised reference word: "H" (hit), "S" (substituted) or "D" (deleted); and the insertions."""
    ref, hyp = normalize(reference, language).split(), normalize(hypothesis, language).split()
    if not ref or not hyp:
        return ["D"] * len(ref), len(hyp)
    status = ["H"] * len(ref)
    insertions = 0
    for kind, r0, r1, h0, h1 in _alignment(ref, hyp):
        if kind == "substitute":
            status[r0:r1] = ["S"] * (r1 - r0)
        elif kind == "delete":
            status[r0:r1] = ["D"] * (r1 - r0)
        elif kind == "insert":
            insertions += h1 - h0
    return status, insertions


def reference_timings(
    reference: str, language: str, words: Sequence[TimedWord], bounds: tuple[float, float]
) -> list[tuple[float, float]]:
    """A time span for each normalised reference word, from the recognizer's timed words."""
    ref = normalize(reference, language).split()
    tokens: list[str] = []
    spans: list[tuple[float, float]] = []
    for w in words:
        for token in normalize(w.text, language).split():
            tokens.append(token)
            spans.append((w.start, w.end))
    timing: list[tuple[float, float] | None] = [None] * len(ref)
    if ref and tokens:
        for kind, r0, r1, h0, _ in _alignment(ref, tokens):
            if kind in ("equal", "substitute"):
                for k in range(r1 - r0):
                    timing[r0 + k] = spans[h0 + k]
    return _fill(timing, bounds)


def _fill(timing: list[tuple[float, float] | None], bounds: tuple[float, float]) -> list[tuple[float, float]]:
    """Spread words without a timing evenly between their timed neighbours (or the bounds)."""
    out: list[tuple[float, float]] = []
    i = 0
    while i < len(timing):
        known = timing[i]
        if known is not None:
            out.append(known)
            i += 1
            continue
        j = i
        while j < len(timing) and timing[j] is None:
            j += 1
        left = out[-1][1] if out else bounds[0]
        nxt = timing[j] if j < len(timing) else None
        right = nxt[0] if nxt is not None else bounds[1]
        right = max(left, right)
        step = (right - left) / (j - i)
        out.extend((left + k * step, left + (k + 1) * step) for k in range(j - i))
        i = j
    return out


def coverage(span: tuple[float, float], segments: Sequence[tuple[float, float]]) -> float:
    """The share of ``span`` that lies inside ``segments`` (non-overlapping); a point counts as 0 or 1."""
    start, end = span
    if end <= start:
        return float(any(s <= start < e for s, e in segments))
    inside = sum(max(0.0, min(end, e) - max(start, s)) for s, e in segments)
    return min(1.0, inside / (end - start))


def attribute(
    reference: str,
    e2e_hypothesis: str,
    language: str,
    reference_spans: Sequence[tuple[float, float]],
    segments: Sequence[tuple[float, float]],
) -> Attribution:
    """Split the end-to-end errors of one utterance between the VAD and the recognizer."""
    status, insertions = word_statuses(reference, e2e_hypothesis, language)
    if len(reference_spans) != len(status):
        raise ValueError(f"{len(reference_spans)} word spans for {len(status)} reference words")
    vad = dropped = clipped = 0
    for state, span in zip(status, reference_spans, strict=True):
        sent = coverage(span, segments)
        lost = sent < SENT
        dropped += sent <= DROPPED
        clipped += DROPPED < sent < SENT
        vad += lost and state != "H"
    errors = sum(s != "H" for s in status) + insertions
    return Attribution(len(status), errors, vad, errors - vad, dropped, clipped)

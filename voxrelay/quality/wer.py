"""Word error rate with Whisper's text normalisers (English; a basic one for other languages)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from voxrelay.errors import MissingDependency


@lru_cache(maxsize=2)
def _normalizer(english: bool) -> Any:
    try:
        from whisper_normalizer.basic import BasicTextNormalizer
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as err:
        raise MissingDependency("WER scoring", "whisper-normalizer", "eval") from err
    return EnglishTextNormalizer() if english else BasicTextNormalizer()


def normalize(text: str, language: str = "en") -> str:
    """Whisper's English normaliser for English, its basic normaliser otherwise."""
    return " ".join(_normalizer(language == "en")(text or "").split())


@dataclass(frozen=True)
class WordErrors:
    """Word-level alignment counts; ``wer`` = (S + D + I) / N."""

    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def reference_words(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        n = self.reference_words
        return self.errors / n if n else float(self.insertions > 0)

    def __add__(self, other: WordErrors) -> WordErrors:
        return WordErrors(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.hits + other.hits,
        )


NO_ERRORS = WordErrors(0, 0, 0, 0)


def word_errors(reference: str, hypothesis: str, language: str = "en") -> WordErrors:
    """Align normalised texts and count substitutions, deletions, insertions and hits."""
    try:
        import jiwer
    except ImportError as err:
        raise MissingDependency("WER scoring", "jiwer", "eval") from err
    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    if not ref:
        return WordErrors(0, 0, len(hyp.split()), 0)
    if not hyp:
        return WordErrors(0, len(ref.split()), 0, 0)
    out = jiwer.process_words(ref, hyp)
    return WordErrors(out.substitutions, out.deletions, out.insertions, out.hits)


def corpus_wer(pairs: Sequence[tuple[str, str]], language: str = "en") -> float:
    """WER over many (reference, hypothesis) pairs: total errors / total reference words."""
    total = NO_ERRORS
    for reference, hypothesis in pairs:
        total = total + word_errors(reference, hypothesis, language)
    return total.wer

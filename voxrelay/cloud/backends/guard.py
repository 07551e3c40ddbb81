"""The tail guard: drops what Whisper hallucinates at the end of a segment instead of returning it.

Whisper, given a segment that ends in silence or noise, sometimes goes on past the speech: a phrase it
is unsure of and finds no speech in, a loop of the same words, or a phrase it times after the audio
has ended. :func:`guard_tail` drops such phrases from the end of a transcript (never its first phrase:
a segment Whisper finds empty is the VAD's false positive, reported as such, not the guard's). A
phrase goes when any of these holds:

- it starts at or after the end of the segment's audio (``PAST_END_SECONDS`` of slack);
- Whisper's own no-speech rule: ``no_speech_prob`` above 0.6 with ``avg_logprob`` below -1;
- its compression ratio is above 2.4 (Whisper's threshold for repetitive text);
- some run of one to four words repeats ``REPEATS`` times in a row.

Phrases before the first one that passes are kept, whatever they hold: only the tail is guarded.
"""

from __future__ import annotations

from dataclasses import replace

from .base import Phrase, Transcript

NO_SPEECH_PROB = 0.6
LOG_PROB = -1.0
COMPRESSION_RATIO = 2.4
REPEATS = 4
PAST_END_SECONDS = 0.1


def repeated(text: str, times: int = REPEATS, longest: int = 4) -> bool:
    """Whether some run of 1..``longest`` words occurs ``times`` times back to back in ``text``."""
    lowered = [w.strip(".,!?;:").lower() for w in text.split()]
    for n in range(1, longest + 1):
        for start in range(len(lowered) - n * times + 1):
            gram = lowered[start : start + n]
            if all(lowered[start + k * n : start + (k + 1) * n] == gram for k in range(1, times)):
                return True
    return False


def hallucinated(phrase: Phrase, audio_seconds: float) -> bool:
    """Whether ``phrase`` looks like text Whisper made up rather than heard (see the module docstring)."""
    return (
        phrase.start >= audio_seconds - PAST_END_SECONDS
        or (phrase.no_speech_prob > NO_SPEECH_PROB and phrase.avg_logprob < LOG_PROB)
        or phrase.compression_ratio > COMPRESSION_RATIO
        or repeated(phrase.text)
    )


def guard_tail(transcript: Transcript, audio_seconds: float) -> Transcript:
    """``transcript`` without the hallucinated phrases at its end (and their words)."""
    phrases = transcript.phrases
    keep = len(phrases)
    while keep > 1 and hallucinated(phrases[keep - 1], audio_seconds):
        keep -= 1
    if keep == len(phrases):
        return transcript
    kept = phrases[:keep]
    end = kept[-1].end
    return replace(
        transcript,
        text=" ".join(p.text for p in kept if p.text),
        phrases=kept,
        words=tuple(w for w in transcript.words if w.start < end),
    )

"""The tail guard on plain transcripts: what it drops from a segment's end, and what it keeps."""

from __future__ import annotations

from voxrelay.cloud.backends.base import Phrase, Transcript, WordTiming
from voxrelay.cloud.backends.guard import guard_tail, repeated


def phrase(text: str, start: float, end: float, **signals: float) -> Phrase:
    values = {"avg_logprob": -0.3, "no_speech_prob": 0.05, "compression_ratio": 1.3, **signals}
    return Phrase(text, start, end, values["avg_logprob"], values["no_speech_prob"], values["compression_ratio"])


def transcript(*phrases: Phrase) -> Transcript:
    words = tuple(
        WordTiming(w, p.start + i * 0.1, p.start + i * 0.1 + 0.05, 0.9)
        for p in phrases
        for i, w in enumerate(p.text.split())
    )
    return Transcript(" ".join(p.text for p in phrases), phrases, "en", 1.0, words)


GOOD = phrase("He is very likely to have a car.", 0.0, 2.4)


def test_a_clean_transcript_is_returned_unchanged() -> None:
    t = transcript(GOOD, phrase("And he drives it to work.", 2.5, 4.0))
    assert guard_tail(t, 4.2) is t


def test_a_phrase_timed_past_the_audio_is_dropped_with_its_words() -> None:
    t = transcript(GOOD, phrase("He is also a car.", 4.6, 6.0))
    guarded = guard_tail(t, 4.5)
    assert guarded.text == GOOD.text
    assert guarded.phrases == (GOOD,)
    assert [w.word for w in guarded.words] == GOOD.text.split()


def test_whispers_no_speech_rule_drops_a_tail_phrase_only_when_both_signals_agree() -> None:
    unsure_silence = phrase("Thank you.", 2.5, 3.0, no_speech_prob=0.8, avg_logprob=-1.4)
    assert guard_tail(transcript(GOOD, unsure_silence), 3.2).text == GOOD.text
    sure = phrase("Thank you.", 2.5, 3.0, no_speech_prob=0.8, avg_logprob=-0.4)
    assert guard_tail(transcript(GOOD, sure), 3.2).text.endswith("Thank you.")


def test_repetitive_tails_are_dropped() -> None:
    loop = phrase("the car the car the car the car", 2.5, 4.0)
    assert guard_tail(transcript(GOOD, loop), 4.2).text == GOOD.text
    compressible = phrase("a car a car a car", 2.5, 4.0, compression_ratio=2.9)
    assert guard_tail(transcript(GOOD, compressible), 4.2).text == GOOD.text


def test_only_the_tail_is_guarded_and_the_first_phrase_stays() -> None:
    bad = phrase("He is also a car.", 0.0, 1.0, no_speech_prob=0.9, avg_logprob=-1.5)
    middle = transcript(bad, GOOD.__class__(GOOD.text, 1.1, 3.0, -0.3, 0.05, 1.3))
    assert guard_tail(middle, 3.2) == middle  # its last phrase is fine: nothing before it is looked at
    alone = transcript(bad)
    assert guard_tail(alone, 1.2) == alone
    two_bad = transcript(
        GOOD, phrase("so so so so", 2.5, 3.0), phrase("Bye.", 3.3, 3.6, no_speech_prob=0.9, avg_logprob=-2)
    )
    assert guard_tail(two_bad, 3.8).text == GOOD.text


def test_repeated_counts_runs_back_to_back() -> None:
    assert repeated("no no no no")
    assert repeated("go on, go on, go on, go on")
    assert not repeated("no no no")
    assert not repeated("the cat and the dog and the bird and the fish")

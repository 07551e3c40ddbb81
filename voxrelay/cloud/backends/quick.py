"""A quick, provisional decode of a segment's audio so far, for interim results (faster-whisper).

Whisper's encoder always sees a 30-second window, padded with silence; on CPU it is most of the cost
of decoding a short segment. CTranslate2 also encodes shorter windows, and Whisper still reads speech
followed by some silence in them: on the dev utterances cut every 2 s, a window of the audio plus at
least 5 s (10 s at the least, in 5 s steps) gave the words of faster-whisper's own greedy decode in
30 of 48 cuts, at half its time (``scripts/bench_interim.py``). The window must not end with the
audio: without silence after it the decoder repeats itself. So an interim decode is one such window,
greedy, without timestamps, with the segment's prompt and hotwords, and a bound on its length; text
the decoder repeated (compression ratio above 2.4) or that is likely not speech is given back empty,
and the interim is then skipped.

Only for English-only models or a given language (a multilingual model detecting the language takes
faster-whisper's own path), and never for a final result: those always decode faster-whisper's way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .base import DecodeOptions, Phrase, Transcript

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

FRAMES_PER_SECOND = 100
WINDOW_STEP = 500  # frames (5 s)
MIN_WINDOW = 1000  # frames (10 s)
FULL_WINDOW = 3000  # frames (30 s): Whisper's own
# Text tokens allowed per second of audio (English speech makes about 4), and a few more.
TOKENS_PER_SECOND = 8
EXTRA_TOKENS = 16
COMPRESSION_RATIO_THRESHOLD = 2.4
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0


def window_frames(content_frames: int) -> int:
    """The encoder window for this much audio: at least 5 s of silence after it, 10 s at the least."""
    steps = -(-(content_frames + WINDOW_STEP) // WINDOW_STEP)
    return min(FULL_WINDOW, max(MIN_WINDOW, steps * WINDOW_STEP))


def quick_decode(model: WhisperModel, samples: np.ndarray, options: DecodeOptions, language: str) -> Transcript:
    """``samples`` (float32 mono 16 kHz, checked) decoded once, greedily, in a short window."""
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

    features = model.feature_extractor(samples)[:, :-1]
    content = min(int(features.shape[-1]), FULL_WINDOW)
    window = np.zeros((1, features.shape[0], window_frames(content)), dtype=np.float32)
    window[0, :, :content] = features[:, :content]
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task=options.task, language=language)
    previous = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
    prompt = model.get_prompt(tokenizer, previous, without_timestamps=True, hotwords=options.hotwords)
    seconds = samples.size / 16000
    max_length = min(model.max_length, len(prompt) + int(TOKENS_PER_SECOND * seconds) + EXTRA_TOKENS)
    encoded = model.model.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)
    result = model.model.generate(
        encoded,
        [prompt],
        beam_size=1,
        max_length=max_length,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        return_scores=True,
        return_no_speech_prob=True,
    )[0]
    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    text = tokenizer.decode(tokens).strip()
    avg_logprob = float(result.scores[0]) if result.scores else 0.0
    compression = get_compression_ratio(text) if text else 0.0
    no_speech = float(result.no_speech_prob)
    unreliable = compression > COMPRESSION_RATIO_THRESHOLD or (
        no_speech > NO_SPEECH_THRESHOLD and avg_logprob < LOG_PROB_THRESHOLD
    )
    if unreliable or not text:
        return Transcript("", (), language, 1.0)
    phrase = Phrase(text, 0.0, seconds, avg_logprob, no_speech, compression, 0.0)
    return Transcript(text, (phrase,), language, 1.0)

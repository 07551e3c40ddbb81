"""Several segments decoded together: faster-whisper's ``transcribe`` run in lockstep over a batch.

faster-whisper decodes one audio at a time: for each 30-second window it runs the encoder, then the
decoder with temperature fallback, then moves to the next window (or to where the last complete
timestamp pair ended). Here every segment of a batch keeps exactly that state (its seek position,
its previous-text prompt, its fallback schedule), and each step runs the model once for all of them:

- the encoder over the current window of every segment, whatever their options (the encoder does
  not depend on them), ``encoder_batch`` windows per call: on CPU the encoder's attention holds
  about 75 MB per window of tiny.en and gains little from batching, so it runs one window at a time
  by default and its outputs (2.3 MB each) are stacked for the decoder;
- one decoder call per group of segments that decode with the same generation settings (beam or
  sampling at the same temperature, penalties, lengths) and whose prompts put the start-of-transcript
  token at the same position (a CTranslate2 requirement; first windows without an initial prompt all
  do): languages, tasks and prompts may differ within a group, as they are part of each prompt;
- segments that need a fallback are decoded again together at the next temperature.

Everything else is faster-whisper's own code (its feature extractor, prompt builder, timestamp
splitting, word alignment), with its default options taken from the signature of
``WhisperModel.transcribe``, so the text is the one ``transcribe`` gives for each segment alone;
``tests/test_batching.py`` checks that on the development utterances.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import Segment, TranscriptionOptions

    from .base import DecodeOptions


@dataclass(frozen=True)
class Decoded:
    """One segment's result: faster-whisper's segments and the language it was decoded in."""

    segments: list[Segment]
    language: str
    language_probability: float


@dataclass(eq=False)
class _Item:
    """The decoding state of one segment (what faster-whisper keeps in ``generate_segments``)."""

    features: np.ndarray
    options: TranscriptionOptions
    tokenizer: Tokenizer
    language: str
    language_probability: float
    seek: int = 0
    all_tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    last_speech_timestamp: float = 0.0
    segments: list[Segment] = field(default_factory=list)

    @property
    def content_frames(self) -> int:
        return int(self.features.shape[-1]) - 1


@dataclass(eq=False)
class _Window:
    """One step of one item: the 30-second window it decodes now."""

    item: _Item
    row: int  # its row in the step's encoder output
    time_offset: float
    segment_size: int
    segment_duration: float
    prompt: list[int]
    max_length: int
    temperature_index: int = 0
    tried: list[tuple[Any, float, float, float]] = field(default_factory=list)
    below_threshold: list[tuple[Any, float, float, float]] = field(default_factory=list)
    chosen: tuple[Any, float, float, float] | None = None


def transcribe_defaults() -> dict[str, Any]:
    """``WhisperModel.transcribe``'s keyword defaults (what a call that does not set them uses)."""
    from faster_whisper import WhisperModel

    return {
        name: p.default
        for name, p in inspect.signature(WhisperModel.transcribe).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


class LockstepDecoder:
    """Decodes batches of segments on one ``WhisperModel`` (blocking; one batch per call)."""

    def __init__(self, model: WhisperModel, encoder_batch: int = 1) -> None:
        if encoder_batch < 1:
            raise ValueError("encoder_batch must be at least 1")
        self.model = model
        self.encoder_batch = encoder_batch
        self._defaults = transcribe_defaults()
        self._to_cpu = model.model.device != "cpu"

    # Options.

    def _options(self, options: DecodeOptions, language: str) -> tuple[TranscriptionOptions, Tokenizer]:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        d = dict(self._defaults)
        d.update(
            beam_size=options.beam_size,
            word_timestamps=options.word_timestamps,
            initial_prompt=options.initial_prompt,
            hotwords=options.hotwords,
            without_timestamps=options.without_timestamps,
        )
        if options.temperature is not None:
            d["temperature"] = options.temperature
        tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.model.model.is_multilingual, task=options.task, language=language
        )
        temperature = d["temperature"]
        suppress = d["suppress_tokens"]
        fields = {name: d[name] for name in TranscriptionOptions.__dataclass_fields__ if name in d}
        fields.update(
            temperatures=list(temperature) if isinstance(temperature, (list, tuple)) else [temperature],
            suppress_tokens=get_suppressed_tokens(tokenizer, suppress) if suppress else suppress,
        )
        return TranscriptionOptions(**fields), tokenizer

    # The batch.

    def decode(self, batch: Sequence[tuple[np.ndarray, DecodeOptions]]) -> list[Decoded]:
        """Decode every ``(audio, options)`` of ``batch`` (float32 mono 16 kHz, already checked)."""
        model = self.model
        features = [model.feature_extractor(audio) for audio, _ in batch]
        languages = self._languages(features, [options for _, options in batch])
        items = []
        for feats, (_, options), (language, probability) in zip(features, batch, languages, strict=True):
            opts, tokenizer = self._options(options, language)
            item = _Item(feats, opts, tokenizer, language, probability)
            if opts.initial_prompt is not None:
                initial = opts.initial_prompt
                item.all_tokens.extend(
                    tokenizer.encode(" " + initial.strip()) if isinstance(initial, str) else list(initial)
                )
            items.append(item)
        while active := [item for item in items if item.seek < item.content_frames]:
            self._step(active)
        return [Decoded(item.segments, item.language, item.language_probability) for item in items]

    def _languages(self, features: list[np.ndarray], options: list[DecodeOptions]) -> list[tuple[str, float]]:
        """Each segment's language: given, English for an English-only model, else detected on its first
        window (as ``transcribe`` does, with one detection window: its most probable language)."""
        from faster_whisper.audio import pad_or_trim

        model = self.model
        out: list[tuple[str, float]] = [
            ("en", 1.0) if not model.model.is_multilingual else (o.language or "", 1.0) for o in options
        ]
        unknown = [i for i, (language, _) in enumerate(out) if not language]
        if unknown:
            frames = model.feature_extractor.nb_max_frames
            windows = np.stack([pad_or_trim(features[i][..., :frames]) for i in unknown])
            results = model.model.detect_language(self._encode(windows))
            for i, result in zip(unknown, results, strict=True):
                token, probability = result[0]
                out[i] = (token[2:-2], float(probability))
        return out

    def _encode(self, windows: np.ndarray) -> Any:
        from faster_whisper.transcribe import get_ctranslate2_storage

        return self.model.model.encode(get_ctranslate2_storage(windows), to_cpu=self._to_cpu)

    def _encode_all(self, windows: list[np.ndarray]) -> Any:
        """The encoder output of every window, ``encoder_batch`` at a time, as one batch."""
        import ctranslate2

        step = self.encoder_batch
        if len(windows) <= step:
            return self._encode(np.stack(windows))
        parts = [np.asarray(self._encode(np.stack(windows[i : i + step]))) for i in range(0, len(windows), step)]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))

    def _step(self, active: list[_Item]) -> None:
        """One window of every active item: one encoder call, grouped decoder calls, then each item moves on."""
        from faster_whisper.audio import pad_or_trim

        model = self.model
        per_window = model.feature_extractor.nb_max_frames
        windows: list[_Window] = []
        stacked = []
        for row, item in enumerate(active):
            seek = item.seek
            size = min(per_window, item.content_frames - seek)
            stacked.append(pad_or_trim(item.features[:, seek : seek + size]))
            opts = item.options
            prompt = model.get_prompt(
                item.tokenizer,
                item.all_tokens[item.prompt_reset_since :],
                without_timestamps=opts.without_timestamps,
                prefix=opts.prefix if seek == 0 else None,
                hotwords=opts.hotwords,
            )
            max_length = len(prompt) + opts.max_new_tokens if opts.max_new_tokens is not None else model.max_length
            if max_length > model.max_length:
                raise ValueError(
                    f"a prompt of {len(prompt)} tokens leaves no room to decode (limit {model.max_length})"
                )
            time_per_frame = model.feature_extractor.time_per_frame
            windows.append(_Window(item, row, seek * time_per_frame, size, size * time_per_frame, prompt, max_length))
        encoded = self._encode_all(stacked)
        self._generate(windows, encoded)
        for window in windows:
            self._advance(window, encoded)

    def _generate(self, windows: list[_Window], encoded: Any) -> None:
        """Decode every window, with faster-whisper's temperature fallback, batching equal settings."""
        pending = list(windows)
        while pending:
            groups: dict[tuple[tuple[str, Any], ...], list[_Window]] = {}
            for window in pending:
                groups.setdefault(self._settings_key(window), []).append(window)
            pending = []
            for key, group in groups.items():
                kwargs = dict(key)
                del kwargs["_sot_at"]
                kwargs["suppress_tokens"] = list(kwargs["suppress_tokens"])
                rows = [w.row for w in group]
                results = self.model.model.generate(
                    self._rows(encoded, rows),
                    [w.prompt for w in group],
                    return_scores=True,
                    return_no_speech_prob=True,
                    **kwargs,
                )
                for window, result in zip(group, results, strict=True):
                    if self._judge(window, result):
                        pending.append(window)

    def _settings_key(self, window: _Window) -> tuple[tuple[str, Any], ...]:
        """The generation settings of a window's next try, as a hashable (equal keys decode together)."""
        opts = window.item.options
        temperature = opts.temperatures[window.temperature_index]
        if temperature > 0:
            mode: dict[str, Any] = {
                "beam_size": 1,
                "num_hypotheses": opts.best_of,
                "sampling_topk": 0,
                "sampling_temperature": temperature,
            }
        else:
            mode = {"beam_size": opts.beam_size, "patience": opts.patience}
        mode.update(
            length_penalty=opts.length_penalty,
            repetition_penalty=opts.repetition_penalty,
            no_repeat_ngram_size=opts.no_repeat_ngram_size,
            max_length=window.max_length,
            suppress_blank=opts.suppress_blank,
            suppress_tokens=tuple(opts.suppress_tokens or ()),
            max_initial_timestamp_index=round(opts.max_initial_timestamp / self.model.time_precision),
        )
        # CTranslate2 needs <|startoftranscript|> at the same position in every prompt of a call.
        sot = window.item.tokenizer.sot
        mode["_sot_at"] = window.prompt.index(sot) if sot in window.prompt else 0
        return tuple(sorted(mode.items()))

    def _rows(self, encoded: Any, rows: list[int]) -> Any:
        """The encoder output of ``rows`` (all of it when that is every row)."""
        import ctranslate2

        if rows == list(range(int(encoded.shape[0]))):
            return encoded
        array = np.asarray(encoded)
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(array[rows]))

    def _judge(self, window: _Window, result: Any) -> bool:
        """Record one try of ``window``; True when it must be decoded again at the next temperature."""
        from faster_whisper.transcribe import get_compression_ratio

        opts = window.item.options
        temperature = opts.temperatures[window.temperature_index]
        tokens = result.sequences_ids[0]
        seq_len = len(tokens)
        avg_logprob = result.scores[0] * (seq_len**opts.length_penalty) / (seq_len + 1)
        compression_ratio = get_compression_ratio(window.item.tokenizer.decode(tokens).strip())
        decoded = (result, avg_logprob, temperature, compression_ratio)
        window.tried.append(decoded)
        needs_fallback = False
        if opts.compression_ratio_threshold is not None:
            if compression_ratio > opts.compression_ratio_threshold:
                needs_fallback = True
            else:
                window.below_threshold.append(decoded)
        if opts.log_prob_threshold is not None and avg_logprob < opts.log_prob_threshold:
            needs_fallback = True
        if (
            opts.no_speech_threshold is not None
            and result.no_speech_prob > opts.no_speech_threshold
            and opts.log_prob_threshold is not None
            and avg_logprob < opts.log_prob_threshold
        ):
            needs_fallback = False  # silence
        if not needs_fallback:
            window.chosen = decoded
            return False
        if window.temperature_index + 1 < len(opts.temperatures):
            window.temperature_index += 1
            return True
        best = max(window.below_threshold or window.tried, key=lambda x: x[1])
        window.chosen = (best[0], best[1], temperature, best[3])
        return False

    def _advance(self, window: _Window, encoded: Any) -> None:
        """Turn a decoded window into segments and move the item on (``generate_segments``' loop body)."""
        from faster_whisper.transcribe import Segment, Word
        from faster_whisper.utils import get_end

        model = self.model
        item, opts, tokenizer = window.item, window.item.options, window.item.tokenizer
        assert window.chosen is not None
        result, avg_logprob, temperature, compression_ratio = window.chosen
        if opts.no_speech_threshold is not None:
            should_skip = result.no_speech_prob > opts.no_speech_threshold
            if opts.log_prob_threshold is not None and avg_logprob > opts.log_prob_threshold:
                should_skip = False
            if should_skip:
                item.seek += window.segment_size
                return
        previous_seek = item.seek
        current, item.seek, single_timestamp_ending = model._split_segments_by_timestamps(
            tokenizer=tokenizer,
            tokens=result.sequences_ids[0],
            time_offset=window.time_offset,
            segment_size=window.segment_size,
            segment_duration=window.segment_duration,
            seek=item.seek,
        )
        if opts.word_timestamps:
            model.add_word_timestamps(
                [current],
                tokenizer,
                self._rows(encoded, [window.row]),
                window.segment_size,
                opts.prepend_punctuations,
                opts.append_punctuations,
                last_speech_timestamp=item.last_speech_timestamp,
            )
            if not single_timestamp_ending:
                last_word_end = get_end(current)
                if last_word_end is not None and last_word_end > window.time_offset:
                    item.seek = round(last_word_end * model.frames_per_second)
            last_word_end = get_end(current)
            if last_word_end is not None:
                item.last_speech_timestamp = last_word_end
        for piece in current:
            tokens = piece["tokens"]
            text = tokenizer.decode(tokens)
            if piece["start"] == piece["end"] or not text.strip():
                continue
            item.all_tokens.extend(tokens)
            item.segments.append(
                Segment(
                    id=len(item.segments) + 1,
                    seek=previous_seek,
                    start=piece["start"],
                    end=piece["end"],
                    text=text,
                    tokens=tokens,
                    temperature=temperature,
                    avg_logprob=avg_logprob,
                    compression_ratio=compression_ratio,
                    no_speech_prob=result.no_speech_prob,
                    words=[Word(**word) for word in piece["words"]] if opts.word_timestamps else None,
                )
            )
        if not opts.condition_on_previous_text or temperature > opts.prompt_reset_on_temperature:
            item.prompt_reset_since = len(item.all_tokens)

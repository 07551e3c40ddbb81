"""The openai-whisper (PyTorch) backend, fed with a checkpoint converted from the CTranslate2 weights.

Decoding matches faster-whisper's defaults: beam search (``best_of=5`` for sampled fallbacks),
temperature fallback (0.0, 0.2, ..., 1.0), compression-ratio threshold 2.4, log-prob threshold
-1.0, no-speech threshold 0.6, conditioning on previous text. With the same weights in float32 the
two backends produce the same text.

openai-whisper has no ``hotwords``: they are appended to the initial prompt, which is then carried
into every 30-second window (``carry_initial_prompt``), as faster-whisper does with hotwords.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from voxrelay.errors import BackendError, MissingDependency
from voxrelay.models.catalogue import ResolvedModel, local_model, model_version

from .base import DecodeOptions, ModelDescriptor, Phrase, Transcript, WordTiming
from .faster_whisper import check_audio
from .guard import guard_tail

if TYPE_CHECKING:
    from whisper.model import Whisper

BACKEND_NAME = "openai-whisper"
_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class OpenAIWhisperBackend:
    """One openai-whisper model. Calls into the torch module are serialised with a lock."""

    def __init__(self, resolved: ResolvedModel, device: str = "cpu") -> None:
        try:
            import torch  # noqa: F401
            import whisper
        except ImportError as err:
            missing = getattr(err, "name", None) or "openai-whisper"
            package = "torch" if missing == "torch" else "openai-whisper"
            raise MissingDependency("the openai-whisper backend", package, "whisper") from err
        from voxrelay.models.convert import alignment_heads_dump, openai_checkpoint, read_alignment_heads

        local = local_model(resolved)
        assert local.path is not None
        checkpoint = openai_checkpoint(local)
        try:
            model = whisper.load_model(checkpoint, device=device)
        except (RuntimeError, KeyError) as err:
            raise BackendError(
                f"cannot load the openai-whisper checkpoint {checkpoint} of {resolved.name!r}: {err}; "
                "delete the file to convert it again"
            ) from err
        heads = read_alignment_heads(local.path)
        if heads:  # load_model only knows the heads of its own named models
            model.set_alignment_heads(alignment_heads_dump(heads, model.dims.n_text_layer, model.dims.n_text_head))
        model.eval()
        self._model: Whisper | None = model
        self._device = device
        self._lock = threading.Lock()
        self._descriptor = ModelDescriptor(
            name=resolved.name,
            version=model_version(local.path),
            backend=BACKEND_NAME,
            multilingual=bool(model.is_multilingual),
            compute=f"{device}/float32",
        )

    @property
    def model(self) -> ModelDescriptor:
        return self._descriptor

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        samples = check_audio(audio)
        prompt = options.initial_prompt
        if options.hotwords:
            prompt = f"{prompt.rstrip()} {options.hotwords.strip()}" if prompt else options.hotwords.strip()
        with self._lock:
            model = self._model
            if model is None:
                raise BackendError("the openai-whisper backend is closed")
            try:
                language, probability = self._language(model, samples, options.language)
                result: dict[str, Any] = model.transcribe(
                    samples,
                    verbose=None,
                    fp16=False,
                    temperature=_TEMPERATURES if options.temperature is None else options.temperature,
                    compression_ratio_threshold=2.4,
                    logprob_threshold=-1.0,
                    no_speech_threshold=0.6,
                    condition_on_previous_text=True,
                    beam_size=options.beam_size,
                    best_of=5,
                    language=language,
                    task=options.task,
                    word_timestamps=options.word_timestamps,
                    without_timestamps=options.without_timestamps,
                    initial_prompt=prompt,
                    carry_initial_prompt=bool(options.hotwords),
                )
            except Exception as err:
                raise BackendError(f"openai-whisper failed on a {samples.size / 16000:.2f} s segment: {err}") from err
        segments = result["segments"]
        phrases = tuple(
            Phrase(
                text=str(s["text"]).strip(),
                start=float(s["start"]),
                end=float(s["end"]),
                avg_logprob=float(s["avg_logprob"]),
                no_speech_prob=float(s["no_speech_prob"]),
                compression_ratio=float(s["compression_ratio"]),
                temperature=float(s.get("temperature", 0.0)),
            )
            for s in segments
        )
        words = tuple(
            WordTiming(
                word=str(w["word"]),
                start=float(w["start"]),
                end=float(w["end"]),
                probability=float(w["probability"]),
            )
            for s in segments
            for w in s.get("words", ())
        )
        transcript = Transcript(
            text=str(result["text"]).strip(),
            phrases=phrases,
            language=language,
            language_probability=probability,
            words=words,
        )
        return guard_tail(transcript, samples.size / 16000) if options.tail_guard else transcript

    def _language(self, model: Whisper, samples: np.ndarray, requested: str | None) -> tuple[str, float]:
        """The language to decode in and its probability (1.0 when fixed by the model or caller)."""
        if not model.is_multilingual:
            return "en", 1.0
        if requested is not None:
            return requested, 1.0
        import torch
        from whisper.audio import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim

        # The same mel window model.transcribe would use to detect the language itself.
        mel = log_mel_spectrogram(samples, model.dims.n_mels, padding=N_SAMPLES)
        segment = pad_or_trim(mel, N_FRAMES).to(model.device)
        with torch.no_grad():
            _, probs = model.detect_language(segment)
        assert isinstance(probs, dict)
        language = max(probs, key=probs.__getitem__)
        return str(language), float(probs[language])

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a prompt, in the model's own tokenizer."""
        from whisper.tokenizer import get_tokenizer

        tokenizer = get_tokenizer(self._descriptor.multilingual)
        return len(tokenizer.encode(" " + text.strip()))

    def close(self) -> None:
        """Drop the model (waits for a transcription in progress)."""
        with self._lock:
            self._model = None

"""The faster-whisper (CTranslate2) backend: the default recognizer on CPU and GPU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from voxrelay.errors import BackendError, InvalidArgument, MissingDependency, VoxrelayError
from voxrelay.models.catalogue import ResolvedModel, local_model, model_version

from .base import DecodeOptions, ModelDescriptor, Phrase, Transcript, WordTiming
from .guard import guard_tail
from .quick import quick_decode

BACKEND_NAME = "faster-whisper"


class FasterWhisperBackend:
    """One faster-whisper ``WhisperModel``; ``transcribe`` may be called from several threads.

    ``num_workers`` is how many transcriptions CTranslate2 runs at once (each with ``cpu_threads``
    threads; 0 means CTranslate2's default). Decoding uses faster-whisper's defaults (beam search
    with temperature fallback, condition on previous text) without its VAD filter: the edge has
    already cut the audio to speech.
    """

    def __init__(
        self,
        resolved: ResolvedModel,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        num_workers: int = 1,
    ) -> None:
        if cpu_threads < 0:
            raise InvalidArgument(f"cpu_threads: {cpu_threads} must be 0 (automatic) or more")
        if num_workers < 1:
            raise InvalidArgument(f"num_workers: {num_workers} must be at least 1")
        if device == "cpu" and compute_type == "float16":
            raise InvalidArgument("compute_type: float16 does not run on CPU; use int8 or float32")
        try:
            from faster_whisper import WhisperModel
        except ImportError as err:
            raise MissingDependency("the faster-whisper backend", "faster-whisper", "cloud") from err
        local = local_model(resolved)
        assert local.path is not None
        try:
            self._model: WhisperModel | None = WhisperModel(
                local.path,
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                num_workers=num_workers,
                local_files_only=True,
            )
        except ValueError as err:  # CTranslate2's word for a bad device or compute type
            raise InvalidArgument(f"cannot load {resolved.name!r} on {device}/{compute_type}: {err}") from err
        except RuntimeError as err:
            raise BackendError(f"cannot load model {resolved.name!r} from {local.path}: {err}") from err
        from .lockstep import LockstepDecoder

        self._lockstep: LockstepDecoder | None = LockstepDecoder(self._model)
        self._multilingual = bool(self._model.model.is_multilingual)
        actual_compute = getattr(self._model.model, "compute_type", compute_type)
        self._descriptor = ModelDescriptor(
            name=resolved.name,
            version=model_version(local.path),
            backend=BACKEND_NAME,
            multilingual=self._multilingual,
            compute=f"{device}/{actual_compute}",
        )

    @property
    def model(self) -> ModelDescriptor:
        return self._descriptor

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcript:
        """One segment, through faster-whisper's own ``transcribe``."""
        model = self._model
        if model is None:
            raise BackendError("the faster-whisper backend is closed")
        samples = check_audio(audio)
        language = options.language if self._multilingual else "en"
        if options.interim and language is not None:
            try:
                return quick_decode(model, samples, options, language)
            except Exception as err:
                raise BackendError(f"faster-whisper failed on a {samples.size / 16000:.2f} s interim: {err}") from err
        try:
            segments, info = model.transcribe(
                samples,
                language=language,
                task=options.task,
                beam_size=options.beam_size,
                word_timestamps=options.word_timestamps,
                initial_prompt=options.initial_prompt,
                hotwords=options.hotwords,
                vad_filter=False,
                without_timestamps=options.without_timestamps,
                **({} if options.temperature is None else {"temperature": options.temperature}),
            )
            segments = list(segments)  # decoding happens while the generator is consumed
        except Exception as err:
            raise BackendError(f"faster-whisper failed on a {samples.size / 16000:.2f} s segment: {err}") from err
        transcript = _transcript(segments, info.language, float(info.language_probability))
        return guard_tail(transcript, samples.size / 16000) if options.tail_guard else transcript

    def transcribe_batch(self, batch: Sequence[tuple[np.ndarray, DecodeOptions]]) -> list[Transcript | VoxrelayError]:
        """Several segments decoded together (see :mod:`.lockstep`): the same texts as ``transcribe`` one
        by one, in fewer model calls. A segment that fails gets its error in its place; the others go on."""
        decoder = self._lockstep
        if decoder is None:
            raise BackendError("the faster-whisper backend is closed")
        outcomes: list[Transcript | VoxrelayError] = []
        checked: list[tuple[int, np.ndarray, DecodeOptions]] = []
        for i, (audio, options) in enumerate(batch):
            if options.interim and (options.language or not self._multilingual):  # one quick call each
                try:
                    outcomes.append(self.transcribe(audio, options))
                except VoxrelayError as err:
                    outcomes.append(err)
                continue
            try:
                checked.append((i, check_audio(audio), options))
                outcomes.append(BackendError("not decoded"))
            except VoxrelayError as err:
                outcomes.append(err)
        if not checked:
            return outcomes
        try:
            decoded = decoder.decode([(samples, options) for _, samples, options in checked])
        except Exception as err:
            if len(checked) == 1:
                i, samples, _ = checked[0]
                outcomes[i] = BackendError(f"faster-whisper failed on a {samples.size / 16000:.2f} s segment: {err}")
                return outcomes
            decoded = None
        if decoded is None:  # one of them broke the batch: each alone, so that only that one fails
            for i, samples, options in checked:
                outcomes[i] = self.transcribe_batch([(samples, options)])[0]
            return outcomes
        for (i, samples, options), result in zip(checked, decoded, strict=True):
            transcript = _transcript(result.segments, result.language, result.language_probability)
            outcomes[i] = guard_tail(transcript, samples.size / 16000) if options.tail_guard else transcript
        return outcomes

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a prompt (faster-whisper encodes it after a space)."""
        model = self._model
        if model is None:
            raise BackendError("the faster-whisper backend is closed")
        return len(model.hf_tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids)

    def close(self) -> None:
        """Drop the model; CTranslate2 frees its memory when the last reference goes."""
        self._model = None
        self._lockstep = None


def _transcript(segments: Sequence[Any], language: str, language_probability: float) -> Transcript:
    """faster-whisper's segments as a :class:`Transcript`."""
    phrases = tuple(
        Phrase(
            text=s.text.strip(),
            start=float(s.start),
            end=float(s.end),
            avg_logprob=float(s.avg_logprob),
            no_speech_prob=float(s.no_speech_prob),
            compression_ratio=float(s.compression_ratio),
            temperature=float(s.temperature or 0.0),
        )
        for s in segments
    )
    words = tuple(
        WordTiming(word=w.word, start=float(w.start), end=float(w.end), probability=float(w.probability))
        for s in segments
        for w in (s.words or ())
    )
    return Transcript(
        text="".join(s.text for s in segments).strip(),
        phrases=phrases,
        language=language,
        language_probability=language_probability,
        words=words,
    )


def check_audio(audio: np.ndarray) -> np.ndarray:
    """Validate a segment (1-D, float, finite, non-empty) and return it as contiguous float32."""
    if not isinstance(audio, np.ndarray):
        raise InvalidArgument(f"audio: expected a numpy array, got {type(audio).__name__}")
    if audio.ndim != 1:
        raise InvalidArgument(f"audio: expected mono samples (1-D), got shape {audio.shape}")
    if audio.dtype.kind != "f":
        raise InvalidArgument(f"audio: expected float samples in [-1, 1], got dtype {audio.dtype}")
    if audio.size == 0:
        raise InvalidArgument("audio: the segment is empty")
    samples = np.ascontiguousarray(audio, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise InvalidArgument("audio: the segment contains NaN or infinite samples")
    return samples

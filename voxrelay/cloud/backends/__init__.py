"""Recognition backends behind one small interface (see ``base.Backend``).

Heavy packages (faster-whisper, openai-whisper/torch) are imported lazily by ``load_backend``.
"""

from .base import Backend, DecodeOptions, ModelDescriptor, Phrase, Transcript, WordTiming

__all__ = ["Backend", "DecodeOptions", "ModelDescriptor", "Phrase", "Transcript", "WordTiming"]

__all__ += ["BACKENDS", "load_backend"]

BACKENDS = ("faster-whisper", "openai-whisper")


def load_backend(
    model: str = "tiny.en",
    backend: str = "faster-whisper",
    *,
    device: str = "cpu",
    compute_type: str = "int8",
    num_workers: int = 1,
    cpu_threads: int = 0,
) -> Backend:
    """Resolve ``model`` (see ``voxrelay.models.catalogue``) and load it into ``backend``.

    ``compute_type``, ``num_workers`` and ``cpu_threads`` (per worker) apply to faster-whisper;
    openai-whisper runs float32 and one transcription at a time.
    """
    from voxrelay.errors import InvalidArgument, MissingDependency
    from voxrelay.models.catalogue import resolve_model

    if backend not in BACKENDS:
        raise InvalidArgument(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    resolved = resolve_model(model)
    if backend == "faster-whisper":
        try:
            import faster_whisper  # noqa: F401
        except ImportError as err:
            raise MissingDependency("the faster-whisper backend", "faster-whisper", "cloud") from err
        from .faster_whisper import FasterWhisperBackend

        return FasterWhisperBackend(
            resolved, device=device, compute_type=compute_type, cpu_threads=cpu_threads, num_workers=num_workers
        )
    for module, package in (("torch", "torch"), ("whisper", "openai-whisper")):
        try:
            __import__(module)
        except ImportError as err:
            raise MissingDependency("the openai-whisper backend", package, "whisper") from err
    from .openai_whisper import OpenAIWhisperBackend

    return OpenAIWhisperBackend(resolved, device=device)

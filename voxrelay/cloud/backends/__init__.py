"""Recognition backends behind one small interface (see ``base.Backend``).

Heavy packages (faster-whisper, openai-whisper/torch) are imported lazily by ``load_backend``.
"""

from .base import Backend, DecodeOptions, ModelDescriptor, Phrase, Transcript, WordTiming

__all__ = ["Backend", "DecodeOptions", "ModelDescriptor", "Phrase", "Transcript", "WordTiming"]

"""The previous segment's text as the next one's prompt (``serve --context-seconds``)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from voxrelay.cloud.backends.base import DecodeOptions
from voxrelay.errors import VoxrelayError
from voxrelay.protos import pb

CONTEXT_WORDS = 40
"""Words of the previous result passed as the prompt (about 50-60 tokens of English, well inside
Whisper's prompt of 224 with room for a session's initial_prompt)."""


async def previous_text(result: asyncio.Future[pb.RecognitionResult]) -> str:
    """The text of the previous segment's result once it is known ("" when it failed or went away)."""
    try:
        return (await asyncio.shield(result)).text.strip()
    except (VoxrelayError, asyncio.CancelledError):
        if not result.done():  # this task was cancelled, not the previous recognition
            raise
        return ""


def with_context(options: DecodeOptions, text: str) -> DecodeOptions:
    """``options`` with the last :data:`CONTEXT_WORDS` words of ``text`` after its initial_prompt."""
    words = text.split()[-CONTEXT_WORDS:]
    if not words:
        return options
    prompt = " ".join(filter(None, [(options.initial_prompt or "").strip(), " ".join(words)]))
    return replace(options, initial_prompt=prompt)

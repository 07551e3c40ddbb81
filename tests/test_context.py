"""The previous segment's text as Whisper's prompt (``serve --context-seconds``): a real server, tiny.en, JFK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import ServerThread, load_pcm16
from tests.test_service import config, segment
from voxrelay.cloud.backends.base import DecodeOptions
from voxrelay.cloud.context import CONTEXT_WORDS, with_context
from voxrelay.protos import pb, pb_grpc

pytestmark = pytest.mark.slow

SPLIT = 2.6  # seconds: in the pause after "And so, my fellow Americans"


def test_with_context_appends_the_last_words_after_the_sessions_prompt() -> None:
    plain = DecodeOptions(language="en")
    assert with_context(plain, "") is plain
    assert with_context(plain, "And so, my fellow Americans.").initial_prompt == "And so, my fellow Americans."
    given = DecodeOptions(initial_prompt="Kennedy's inaugural address. ")
    both = with_context(given, "And so, my fellow Americans.")
    assert both.initial_prompt == "Kennedy's inaugural address. And so, my fellow Americans."
    long = " ".join(f"w{i}" for i in range(100))
    assert with_context(plain, long).initial_prompt == " ".join(f"w{i}" for i in range(100 - CONTEXT_WORDS, 100))


@pytest.fixture(scope="module")
def context_server(engines: dict[str, Any]) -> Iterator[ServerThread]:
    from voxrelay.cloud.settings import ServerSettings

    running = ServerThread(ServerSettings(port=0, context_seconds=1.0), engines)
    yield running
    running.stop(close_engines=False)


def texts(address: str, requests: list[pb.StreamRequest]) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        responses = list(pb_grpc.RecognizerStub(channel).Stream(iter(requests), timeout=120))
    return [r.result.text for r in responses if r.HasField("result")]


def test_a_segment_close_after_the_previous_one_is_decoded_with_its_text(
    context_server: ServerThread, server: ServerThread, speech_dir: Path
) -> None:
    audio = load_pcm16(speech_dir / "asr" / "jfk_inaugural_1961.wav")
    cut = round(SPLIT * 16000)
    first, rest = audio[:cut].tobytes(), audio[cut:].tobytes()
    near = texts(
        context_server.address,
        [config(session_id="near"), *segment("d/near/0", first), *segment("d/near/1", rest, SPLIT + 0.5)],
    )
    assert len(near) == 2 and near[0]
    # The same as the session's own prompt holding the first segment's text, on a server without context.
    prompted = texts(server.address, [config(session_id="prompted", initial_prompt=near[0]), *segment("d/p/1", rest)])
    assert near[1] == prompted[0]
    # A segment that starts more than context_seconds after the previous one's end is decoded on its own.
    far = texts(
        context_server.address,
        [config(session_id="far"), *segment("d/far/0", first), *segment("d/far/1", rest, SPLIT + 1.5)],
    )
    alone = texts(server.address, [config(session_id="alone"), *segment("d/a/1", rest)])
    assert far == [near[0], alone[0]]

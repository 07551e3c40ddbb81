"""One utterance in, one result out: the path every unary front takes (gRPC Recognize, HTTP, Wyoming).

The gRPC ``Recognize`` method, the OpenAI-compatible HTTP API and the Wyoming server differ only in how
audio and options arrive and how the result leaves. Between those, every one of them goes through
:func:`recognize_utterance`: the length limit, admission control (draining, queued audio), the input
and output metrics, the inference engine and the result message, in that order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from voxrelay.cloud.backends.base import DecodeOptions, Transcript
from voxrelay.cloud.core import ServiceCore
from voxrelay.cloud.engine import Recognition
from voxrelay.cloud.rollout.deployment import Assignment
from voxrelay.cloud.wire import recognition_result
from voxrelay.errors import LimitExceeded, VoxrelayError
from voxrelay.protos import pb

FRONTS = ("grpc", "http", "wyoming")


def check_length(core: ServiceCore, field: str, seconds: float, hint: str) -> None:
    """Refuse an utterance over ``max_segment_seconds`` (RESOURCE_EXHAUSTED, no retry hint)."""
    limit = core.settings.max_segment_seconds
    if seconds > limit:
        raise LimitExceeded(f"{field}: {seconds:.1f} s is over the limit of {limit:g} s; {hint}")


async def recognize_utterance(
    core: ServiceCore,
    engine: Assignment,
    seconds: float,
    decode: Callable[[], np.ndarray],
    options: DecodeOptions,
    *,
    front: str,
    client: str,
) -> tuple[Recognition, pb.RecognitionResult]:
    """Admit ``seconds`` of audio for ``client`` (by its estimated cost), decode it (float32 16 kHz mono),
    recognise it in the client's turn and record the metrics.

    ``decode`` runs only once the utterance is admitted, so a refused request costs no decoding. A
    drain lets an admitted call finish. Errors are counted by the caller's front and raised as they
    are (the front maps them onto its wire).
    """
    core.calls_in_flight += 1
    try:
        core.admit(seconds, client, engine.estimate(seconds, options))
        audio = decode()
        core.metrics_audio(seconds)
        core.queued_audio_seconds += seconds
        try:
            recognition = await engine.recognize(audio, options, client)
        except VoxrelayError as err:
            core.observe_error(engine, err)
            raise
        finally:
            core.queued_audio_seconds -= seconds
    except VoxrelayError as err:
        core.metrics.request(front, err.grpc_code.name)
        raise
    finally:
        core.calls_in_flight -= 1
    result = recognition_result(
        recognition,
        segment_id="",
        offset=0.0,
        audio_seconds=seconds,
        model=engine.model,
        slot=engine.role,
        deployment=engine.name,
    )
    core.observe_result(engine.model, result, audio, session=client, engine=engine, options=options)
    if result.needs_review and not result.text and recognition.transcript.text:
        # The deployment's people transcribe: no front gets the machine's text.
        t = recognition.transcript
        recognition = dataclasses.replace(
            recognition, transcript=Transcript("", (), t.language, t.language_probability)
        )
    core.metrics.request(front, "OK")
    return recognition, result

"""A bounded fuzz of the real recognizer (about 230 cases): every case gets an expected status and a
message, and the server keeps serving. ``scripts/fuzz_server.py`` runs the long version."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from tests import fuzzing
from tests.conftest import ServerThread
from voxrelay.protos import pb, pb_grpc

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
SEEN: Counter[tuple[str, str]] = Counter()


@pytest.fixture(scope="module")
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 << 20)]) as opened:
        yield opened
    print("\nfuzz outcomes:", dict(SEEN))


def run(channel: grpc.Channel, kind: str, case: Any) -> None:
    outcome = fuzzing.run_case(channel, kind, case)
    SEEN[(outcome.kind, outcome.code)] += 1
    fuzzing.check(outcome)


def alive(channel: grpc.Channel) -> None:
    assert pb_grpc.RecognizerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=30).models


@FUZZ
@given(requests=fuzzing.streams)
def test_fuzzed_streams(channel: grpc.Channel, requests: list[pb.StreamRequest]) -> None:
    run(channel, "stream", requests)


@settings(FUZZ, max_examples=60)
@given(request=fuzzing.recognize_requests)
def test_fuzzed_recognize(channel: grpc.Channel, request: pb.RecognizeRequest) -> None:
    run(channel, "recognize", request)


@FUZZ
@given(case=fuzzing.raw_cases)
def test_fuzzed_raw_bytes_on_every_method(channel: grpc.Channel, case: tuple[str, list[bytes]]) -> None:
    run(channel, "raw", case)


def test_server_still_serves_after_the_fuzz(channel: grpc.Channel) -> None:
    alive(channel)
    assert SEEN, "the fuzz tests did not run first"
    assert {code for _, code in SEEN} <= fuzzing.ACCEPTABLE

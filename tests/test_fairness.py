"""Fair share between clients: the scheduler and cost model as pure logic, then a real recognizer with
device tokens where one client floods, idles or trickles and another is still served.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tests.conftest import ServerThread
from tests.test_robustness import Blocker, seconds_of_speech
from voxrelay.cloud.cost import CostModel, CostPrior
from voxrelay.cloud.scheduler import FairScheduler, Job, Priority
from voxrelay.cloud.settings import ServerSettings
from voxrelay.protos import pb, pb_grpc

# Pure logic.


def drain_order(scheduler: FairScheduler) -> list[str]:
    order = []
    while scheduler.queued:
        (job,) = scheduler.take(1, timeout=1)
        order.append(job.payload)
        scheduler.done(job)
    return order


def test_a_flood_delays_another_client_by_one_job_at_most() -> None:
    scheduler = FairScheduler()
    for i in range(20):
        scheduler.submit(Job("flood", 1.0, f"flood-{i}"))
    (first,) = scheduler.take(1)
    scheduler.done(first)
    scheduler.submit(Job("good", 1.0, "good-0"))
    scheduler.submit(Job("good", 1.0, "good-1"))
    order = drain_order(scheduler)
    assert order.index("good-0") <= 1 and order.index("good-1") <= 3, order
    assert scheduler.total_load == 0 and scheduler.load("flood") == 0 and scheduler.busy_clients == 0


def test_turns_are_shared_by_estimated_cost_not_by_count() -> None:
    scheduler = FairScheduler()
    for i in range(30):
        scheduler.submit(Job("short", 0.5, f"short-{i}"))
    for i in range(10):
        scheduler.submit(Job("long", 1.5, f"long-{i}"))
    order = drain_order(scheduler)[:16]
    # Equal shares of work: three short calls for each long one.
    assert 3 <= sum(o.startswith("long") for o in order) <= 5, order


def test_an_idle_client_banks_no_credit() -> None:
    scheduler = FairScheduler()
    for i in range(10):
        scheduler.submit(Job("a", 1.0, f"a-{i}"))
    drain_order(scheduler)  # a has used 10 s; b was idle all along
    for i in range(4):
        scheduler.submit(Job("b", 1.0, f"b-{i}"))
        scheduler.submit(Job("a", 1.0, f"a2-{i}"))
    order = drain_order(scheduler)
    assert order[:4] != ["b-0", "b-1", "b-2", "b-3"], "a later client must not be owed a backlog of turns"


def test_priorities_are_strict_and_batches_share_a_key() -> None:
    scheduler = FairScheduler()
    scheduler.submit(Job("x", 1.0, "interim", Priority.INTERIM))
    scheduler.submit(Job("y", 1.0, "shadow", Priority.SHADOW))
    scheduler.submit(Job("x", 1.0, "final-x1", batch_key="tiny"))
    scheduler.submit(Job("y", 1.0, "final-y1", batch_key="base"))
    scheduler.submit(Job("z", 1.0, "final-z1", batch_key="tiny"))
    batch = scheduler.take(4)
    assert [j.payload for j in batch] == ["final-x1", "final-z1"]  # same key, fair order
    for job in batch:
        scheduler.done(job)
    assert [j.payload for j in scheduler.take(4)] == ["final-y1"]
    assert [j.payload for j in scheduler.take(1)] == ["shadow"]
    queued = scheduler.take(1)
    assert [j.payload for j in queued] == ["interim"]
    late = Job("x", 1.0, "withdrawn")
    scheduler.submit(late)
    assert scheduler.withdraw(late) and not scheduler.withdraw(late)
    assert scheduler.close() == [] and scheduler.take(1) == []


def test_a_flood_leaves_the_other_workers_to_the_other_clients() -> None:
    scheduler = FairScheduler(workers=2)
    scheduler.submit(Job("good", 1.0, "good-0"))
    (served,) = scheduler.take(8)
    scheduler.done(served)  # good is between two segments: still an active client
    for i in range(20):
        scheduler.submit(Job("flood", 1.0, f"flood-{i}"))
    batch = scheduler.take(8)
    assert [j.payload for j in batch] == ["flood-0"]  # one job of each client per batch
    assert scheduler.take(8, timeout=0.3) == []  # the other worker waits for the other client
    scheduler.submit(Job("good", 1.0, "good-1"))
    assert [j.payload for j in scheduler.take(8)] == ["good-1"]  # and its batch holds none of the flood
    scheduler.done(batch[0])
    assert [j.payload for j in scheduler.take(8)] == ["flood-1"]  # the flood's worker came free


def test_a_batch_takes_one_job_of_each_client_of_a_like_cost() -> None:
    scheduler = FairScheduler(workers=4)
    for name in ("a", "b", "c"):
        scheduler.submit(Job(name, 1.0, f"{name}-0"))
        scheduler.submit(Job(name, 1.0, f"{name}-1"))
    scheduler.submit(Job("prompt", 5.0, "prompt-0"))  # a long prompt: five times the others' cost
    scheduler.submit(Job("short", 0.4, "short-0"))  # and a call of under half their cost
    assert [j.payload for j in scheduler.take(8)] == ["a-0", "b-0", "c-0"]
    assert [j.payload for j in scheduler.take(8)] == ["prompt-0"]
    assert [j.payload for j in scheduler.take(8)] == ["short-0"]
    # Alone, a client batches all it has.
    lone = FairScheduler(workers=2)
    for i in range(6):
        lone.submit(Job("only", 1.0, f"only-{i}"))
    assert len(lone.take(8)) == 6


def test_long_prompts_are_decoded_alone_and_one_at_a_time_per_client() -> None:
    scheduler = FairScheduler(workers=3)
    for i in range(3):
        scheduler.submit(Job("prompt", 2.0, f"prompt-{i}", heavy=True))
    first = scheduler.take(8)
    assert [j.payload for j in first] == ["prompt-0"]  # alone in its batch, though it is the only client
    assert scheduler.take(8, timeout=0.3) == []  # and its client's next long prompt waits for it
    scheduler.submit(Job("good", 1.0, "good-0"))
    scheduler.submit(Job("good", 1.0, "good-1", heavy=True))
    assert [j.payload for j in scheduler.take(8)] == ["good-0"]  # a free worker for the arriving client
    assert [j.payload for j in scheduler.take(8)] == ["good-1"]  # one of each client's long prompts runs
    scheduler.done(first[0])
    assert [j.payload for j in scheduler.take(8, timeout=5)] == ["prompt-1"]


def test_clients_are_charged_their_measured_time() -> None:
    scheduler = FairScheduler()
    for i in range(30):
        scheduler.submit(Job("underestimated", 0.1, f"under-{i}"))
        scheduler.submit(Job("honest", 0.5, f"honest-{i}"))
    order = []
    for _ in range(24):
        (job,) = scheduler.take(1)
        job.charged = 1.0 if job.client == "underestimated" else 0.5
        order.append(job.client)
        scheduler.done(job)
    # Equal shares of measured time: two honest jobs for each underestimated one (five times as many
    # of the underestimated ones if the estimates were believed).
    assert 7 <= order.count("underestimated") <= 9, order


def test_the_cost_model_learns_the_fixed_cost_of_a_call() -> None:
    model = CostModel(CostPrior(per_call=0.1, per_audio_second=0.3, per_prompt_token=0.0))
    rng = np.random.default_rng(1)
    for _ in range(200):
        audio, tokens = float(rng.uniform(0.3, 8.0)), int(rng.choice([0, 0, 50, 200]))
        model.observe(audio, tokens, 1.2 + 0.08 * audio + 0.004 * tokens + float(rng.normal(0, 0.02)))
    per_call, per_second, per_token = model.coefficients
    assert per_call == pytest.approx(1.2, rel=0.1)
    assert per_second == pytest.approx(0.08, rel=0.2)
    assert per_token == pytest.approx(0.004, rel=0.2)
    assert model.estimate(0.5) > 0.5 * model.estimate(5.0), "a short call is not nearly free"


# A real recognizer with device tokens.

GOOD, FLOOD = "good-token-0123456789abcdef", "flood-token-0123456789abcdef"


@pytest.fixture(scope="module")
def fair(engines: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    tokens = tmp_path_factory.mktemp("fair") / "tokens.txt"
    tokens.write_text(f"{GOOD} good\n{FLOOD} flood\n")
    settings = ServerSettings(
        port=0,
        auth_token_file=str(tokens),
        max_client_streams=2,
        max_client_queued_work_seconds=3.0,
        config_timeout_seconds=0.5,
        min_audio_rate=0.5,
        slow_grace_seconds=1.0,
        retry_after_seconds=1.0,
    )
    running = ServerThread(settings, engines)
    yield running
    running.stop(close_engines=False)


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture()
def stub(fair: ServerThread) -> Iterator[pb_grpc.RecognizerStub]:
    with grpc.insecure_channel(fair.address) as channel:
        yield pb_grpc.RecognizerStub(channel)


def config(session: str) -> pb.StreamRequest:
    return pb.StreamRequest(config=pb.SessionConfig(device_id="dev", session_id=session))


class Held:
    """A Stream call kept open (its requests fed from a list) until closed."""

    def __init__(self, stub: pb_grpc.RecognizerStub, token: str, *first: pb.StreamRequest) -> None:
        self.more = threading.Event()
        self.responses: list[pb.StreamResponse] = []
        self.error: grpc.RpcError | None = None
        self._first = first
        self.call = stub.Stream(self._requests(), metadata=auth(token), timeout=60)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _requests(self) -> Iterator[pb.StreamRequest]:
        yield from self._first
        self.more.wait(60)

    def _read(self) -> None:
        try:
            self.responses.extend(self.call)
        except grpc.RpcError as err:
            self.error = err

    def close(self) -> None:
        self.more.set()
        self.thread.join(30)


@pytest.mark.slow
def test_one_token_cannot_hold_every_stream(stub: pb_grpc.RecognizerStub) -> None:
    held = [Held(stub, FLOOD, config(f"idle-{i}")) for i in range(2)]
    try:
        deadline = time.monotonic() + 10
        while sum(len(h.responses) for h in held) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Stream(iter([config("third")]), metadata=auth(FLOOD), timeout=10))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "this client holds 2 streams (limit 2 per client)" in info.value.details()
        responses = list(stub.Stream(iter([config("good")]), metadata=auth(GOOD), timeout=10))
        assert responses[0].HasField("accepted")
    finally:
        for h in held:
            h.close()


@pytest.mark.slow
def test_a_stream_without_config_and_a_trickling_segment_are_closed(stub: pb_grpc.RecognizerStub) -> None:
    silent = Held(stub, GOOD)
    silent.thread.join(10)
    assert silent.error is not None and silent.error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "sent no config within 0.5 s" in silent.error.details()

    def trickle() -> Iterator[pb.StreamRequest]:
        yield config("trickle")
        yield pb.StreamRequest(start=pb.SegmentStart(segment_id="dev/trickle/0"))
        for _ in range(100):  # one 10 ms frame every 0.1 s: a tenth of real time
            yield pb.StreamRequest(audio=pb.AudioChunk(audio=bytes(320)))
            time.sleep(0.1)

    began = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Stream(trickle(), metadata=auth(GOOD), timeout=30))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "slower than 0.5× real time" in info.value.details(), info.value.details()
    assert time.monotonic() - began < 8
    silent.close()


@pytest.mark.slow
def test_a_prompt_longer_than_whisper_can_use_is_refused(stub: pb_grpc.RecognizerStub, speech_dir: Path) -> None:
    audio = seconds_of_speech(speech_dir, 2)
    words = " ".join(["speech"] * 1000)
    with pytest.raises(grpc.RpcError) as info:
        stub.Recognize(
            pb.RecognizeRequest(audio=audio, options=pb.RecognitionOptions(initial_prompt=words[:1700])),
            metadata=auth(GOOD),
            timeout=30,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "over Whisper's prompt limit of 223 tokens" in info.value.details(), info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stub.Recognize(
            pb.RecognizeRequest(audio=audio, options=pb.RecognitionOptions(initial_prompt=words)),
            metadata=auth(GOOD),
            timeout=30,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "characters" in info.value.details()
    ok = stub.Recognize(
        pb.RecognizeRequest(audio=audio, options=pb.RecognitionOptions(initial_prompt="Fellow Americans.")),
        metadata=auth(GOOD),
        timeout=60,
    )
    assert "fellow" in ok.text.lower()


@pytest.mark.slow
def test_a_flood_of_short_calls_is_refused_while_the_other_client_is_served_next(
    stub: pb_grpc.RecognizerStub, engines: dict[str, Any], speech_dir: Path
) -> None:
    short, utterance = seconds_of_speech(speech_dir, 0.5), seconds_of_speech(speech_dir, 3)
    served: list[str] = []  # successful calls in the order they finished
    lock = threading.Lock()

    def record(name: str) -> Any:
        def done(call: Any) -> None:
            if call.code() == grpc.StatusCode.OK:
                with lock:
                    served.append(name)

        return done

    with Blocker(engines) as blocker:
        flood = []
        for i in range(30):
            call = stub.Recognize.future(pb.RecognizeRequest(audio=short), metadata=auth(FLOOD), timeout=120)
            call.add_done_callback(record(f"flood-{i}"))
            flood.append(call)
        deadline = time.monotonic() + 10
        while blocker.engine.queued < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the rest of the flood has been admitted or refused by now
        good = stub.Recognize.future(pb.RecognizeRequest(audio=utterance), metadata=auth(GOOD), timeout=120)
        good.add_done_callback(record("good"))
        deadline = time.monotonic() + 10  # the worker is freed once the good call waits in the queue too
        while not blocker.engine.scheduler.load("token:good") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert blocker.engine.scheduler.load("token:good"), "the good call never reached the queue"
    assert "fellow" in good.result().text.lower()
    refused = [call.exception() for call in flood if call.exception() is not None]
    assert refused, "the flood passed its client's limit without a refusal"
    assert all(err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for err in refused)
    assert "limit 3 s per client" in refused[0].details(), refused[0].details()
    assert len(refused) < 28, "the flood's client was refused before it had its share"
    # One worker, freed: the good call went after at most one of the flood's queued calls.
    assert served.index("good") <= 1, served

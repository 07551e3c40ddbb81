"""Dynamic batching: the scheduler's batches and interim shedding as pure logic, the lockstep decoder
against faster-whisper's own transcribe on the dev utterances, and the engine batching concurrent calls.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tests.conftest import ServerThread, load_pcm16
from voxrelay.cloud import parallelism
from voxrelay.cloud.backends.base import DecodeOptions
from voxrelay.cloud.engine import InferenceEngine
from voxrelay.cloud.scheduler import FairScheduler, Job, Priority
from voxrelay.cloud.settings import ServerSettings
from voxrelay.errors import InvalidArgument
from voxrelay.protos import pb, pb_grpc

# Pure logic.


def test_workers_and_threads_follow_the_cores() -> None:
    assert parallelism.pick(cores=1) == parallelism.Parallelism(1, 1, 1)
    assert parallelism.pick(cores=2) == parallelism.Parallelism(2, 1, 2)
    assert parallelism.pick(cores=16) == parallelism.Parallelism(4, 4, 16)
    assert parallelism.pick(workers=1, cores=8) == parallelism.Parallelism(1, 8, 8)
    assert parallelism.pick(cpu_threads=2, cores=8) == parallelism.Parallelism(4, 2, 8)
    assert parallelism.pick(device="cuda", cores=8) == parallelism.Parallelism(1, 1, 8)
    with pytest.raises(InvalidArgument, match="max_batch"):
        ServerSettings(max_batch=0)


def test_a_lingering_batch_collects_jobs_that_arrive_within_the_wait() -> None:
    scheduler = FairScheduler()
    scheduler.submit(Job("a", 1.0, "a-0"))
    taken: list[list[Job]] = []
    worker = threading.Thread(target=lambda: taken.append(scheduler.take(4, linger=2.0, more_coming=lambda _: True)))
    worker.start()
    time.sleep(0.2)
    for name in ("b", "c", "d"):
        scheduler.submit(Job(name, 1.0, f"{name}-0"))
    worker.join(5)
    assert [j.payload for j in taken[0]] == ["a-0", "b-0", "c-0", "d-0"]  # full before the wait ran out
    # Nothing more coming: no wait at all.
    scheduler.submit(Job("a", 1.0, "a-1"))
    began = time.monotonic()
    assert [j.payload for j in scheduler.take(4, linger=2.0, more_coming=lambda _: False)] == ["a-1"]
    assert time.monotonic() - began < 1.0


def test_interim_work_is_shed_first_and_never_counts_against_admission() -> None:
    scheduler = FairScheduler()
    interim = [Job(f"c{i}", 1.0, f"interim-{i}", Priority.INTERIM) for i in range(3)]
    for job in interim:
        scheduler.submit(job)
    assert scheduler.total_load == 0 and scheduler.load("c0") == 0
    # A final segment arrives and no worker is idle: the engine sheds the queued interim work at once.
    scheduler.submit(Job("c0", 1.0, "final"))
    shed = scheduler.shed_interim()
    assert shed == interim and all(job.state == "withdrawn" for job in shed)
    assert scheduler.queued == scheduler.queued_final == 1 and scheduler.total_load == 1.0
    assert [j.payload for j in scheduler.take(4)] == ["final"]


@pytest.mark.parametrize("level", [Priority.INTERIM, Priority.SPECULATIVE])
def test_interim_and_speculative_work_leave_a_worker_idle_for_finals(level: Priority) -> None:
    scheduler = FairScheduler(interim_reserve=1)
    scheduler.submit(Job("a", 1.0, "interim", level))
    # A lone worker may not take it: no other worker would be left for a final.
    assert scheduler.take(1, timeout=0.2) == []
    got: list[str] = []
    workers = [
        threading.Thread(target=lambda: got.extend(j.payload for j in scheduler.take(1, timeout=5))) for _ in range(2)
    ]
    for worker in workers:  # two idle workers: one of them may take the interim job
        worker.start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got == ["interim"]
    scheduler.submit(Job("b", 1.0, "final"))  # the other worker, kept idle, takes the final at once
    for worker in workers:
        worker.join(5)
    assert got == ["interim", "final"]


# The real model.


@pytest.fixture(scope="module")
def utterances(speech_dir: Path, english_utterances: list[dict[str, Any]]) -> list[np.ndarray]:
    return [load_pcm16(speech_dir / row["audio"]).astype(np.float32) / 32768.0 for row in english_utterances]


@pytest.mark.slow
def test_batched_decoding_gives_the_texts_of_one_at_a_time(
    engines: dict[str, Any], utterances: list[np.ndarray]
) -> None:
    backend = next(iter(engines.values())).backend
    # Mixed options in one batch: the default beam with fallback, greedy, word timings, a prompt.
    variants = [
        DecodeOptions(),
        DecodeOptions(beam_size=1, temperature=0.0),
        DecodeOptions(word_timestamps=True),
        DecodeOptions(initial_prompt="Kennedy, Quilter, LibriVox."),
    ]
    batch = [(audio, variants[i % len(variants)]) for i, audio in enumerate(utterances)]
    alone = [backend.transcribe(audio, options) for audio, options in batch]
    together = backend.transcribe_batch(batch)
    for i, (one, many) in enumerate(zip(alone, together, strict=True)):
        assert not isinstance(many, Exception), many
        assert many.text == one.text, (i, one.text, many.text)
        assert [w.word for w in many.words] == [w.word for w in one.words]
        assert [(p.start, p.end) for p in many.phrases] == [(p.start, p.end) for p in one.phrases]
        assert many.avg_logprob == pytest.approx(one.avg_logprob, abs=1e-4)


@pytest.mark.slow
def test_a_bad_segment_fails_alone_in_its_batch(engines: dict[str, Any], utterances: list[np.ndarray]) -> None:
    backend = next(iter(engines.values())).backend
    outcomes = backend.transcribe_batch(
        [(utterances[0], DecodeOptions()), (np.array([np.nan], dtype=np.float32), DecodeOptions())]
    )
    assert "fellow" in outcomes[0].text.lower() or outcomes[0].text
    assert isinstance(outcomes[1], InvalidArgument) and "NaN" in outcomes[1].message


@pytest.mark.slow
def test_the_engine_decodes_concurrent_segments_in_one_call(
    engines: dict[str, Any], utterances: list[np.ndarray]
) -> None:
    backend = next(iter(engines.values())).backend
    engine = InferenceEngine(backend, workers=1, max_batch=4, max_wait=0.5)
    engine.more_coming = lambda: True
    batches: list[tuple[int, str]] = []
    engine.on_batch = lambda size, wait, priority: batches.append((size, priority.name))
    # Four clients' utterances of about the same length: with several clients active, a batch only
    # takes jobs that cost within BATCH_COST_SPREAD of its first (tests/test_fairness.py checks that).
    by_length = sorted(utterances, key=len)
    start = min(range(len(by_length) - 3), key=lambda i: len(by_length[i + 3]) / len(by_length[i]))
    alike = by_length[start : start + 4]
    assert len(alike[-1]) / len(alike[0]) <= 1.5, "the dev set has no four utterances of about one length"

    async def all_at_once() -> list[str]:
        found = await asyncio.gather(
            *(engine.recognize(a, DecodeOptions(), f"client-{i}") for i, a in enumerate(alike))
        )
        return [r.transcript.text for r in found]

    try:
        texts = asyncio.run(all_at_once())
    finally:
        engine.scheduler.close()
    assert batches == [(4, "FINAL")]
    assert texts == [backend.transcribe(a, DecodeOptions()).text for a in alike]


def test_get_info_reports_workers_threads_and_batching(engines: dict[str, Any]) -> None:
    running = ServerThread(ServerSettings(port=0), engines)
    try:
        with grpc.insecure_channel(running.address) as channel:
            info = pb_grpc.RecognizerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10)
    finally:
        running.stop(close_engines=False)
    engine = next(iter(engines.values()))
    assert info.inference.workers == engine.workers and info.inference.max_batch == engine.max_batch
    assert info.inference.cores == parallelism.available_cores()

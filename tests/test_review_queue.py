"""The review queue on a real SQLite file: queueing, accept/correct/skip, the WER of corrections,
hidden suggestions, retention and restarts."""

from __future__ import annotations

import io
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from voxrelay.errors import InvalidArgument, NotFound
from voxrelay.review.queue import NewItem, ReviewQueue, wav_bytes


def item(text: str = "the quick brown fox", *, deployment: str = "tiny", show: bool = True, **kw: object) -> NewItem:
    audio = (0.1 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    fields: dict[str, object] = dict(
        deployment=deployment,
        model="tiny.en",
        model_version="0123456789ab",
        segment_id="dev/s1/0",
        session="dev/s1",
        reason="needs_review",
        why=("avg_logprob -0.95 below -0.8",),
        signals={"avg_logprob": -0.95, "no_speech_prob": 0.1},
        language="en",
        model_text=text,
        show_text=show,
        audio=wav_bytes(audio),
        audio_seconds=1.0,
    )
    fields.update(kw)
    return NewItem(**fields)  # type: ignore[arg-type]


@pytest.fixture()
def queue(tmp_path: Path):  # type: ignore[no-untyped-def]
    q = ReviewQueue(tmp_path / "data" / "review.sqlite3")
    yield q
    q.close()


def test_items_are_queued_by_the_writer_and_read_back_with_their_audio(queue: ReviewQueue) -> None:
    new = item()
    assert queue.enqueue(new)
    queue.flush()
    [listed] = queue.items()
    assert listed.id == new.id and listed.model_text == "the quick brown fox" and listed.audio is None
    full = queue.get(new.id, with_audio=True)
    assert full.audio is not None
    samples, rate = soundfile.read(io.BytesIO(full.audio), dtype="float32")
    assert rate == 16000 and samples.shape == (16000,)
    assert stat.S_IMODE(queue.path.stat().st_mode) == 0o600


def test_accept_and_correct_store_the_final_text_and_its_word_errors(queue: ReviewQueue) -> None:
    a, b = item("hello world"), item("the quick brown box jumps")
    queue.add(a)
    queue.add(b)
    accepted = queue.accept(a.id, "alice")
    assert accepted.status == "accepted" and accepted.final_text == "hello world" and accepted.errors == 0
    corrected = queue.correct(b.id, "The quick brown fox jumps.", "bob")
    assert corrected.status == "corrected" and corrected.reviewer == "bob"
    assert corrected.errors == 1 and corrected.words == 5
    [stats] = queue.stats()
    assert stats.accepted == 1 and stats.corrected == 1 and stats.pending == 0
    assert stats.wer == pytest.approx(1 / 7) and stats.redo_ratio == 0.5
    assert [i.id for i in queue.items("reviewed")] == [b.id, a.id]
    # A "correction" to the same words is an acceptance.
    c = item("same words")
    queue.add(c)
    assert queue.correct(c.id, "  same   words ", "bob").status == "accepted"


def test_skip_puts_an_item_behind_the_others(queue: ReviewQueue) -> None:
    first, second = item("one", created=time.time() - 10), item("two")
    queue.add(first)
    queue.add(second)
    assert [i.id for i in queue.items()] == [first.id, second.id]
    queue.skip(first.id, "alice")
    assert [i.id for i in queue.items()] == [second.id, first.id]
    assert queue.get(first.id).status == "pending"


def test_a_hidden_suggestion_is_never_shown_and_cannot_be_accepted(queue: ReviewQueue) -> None:
    hidden = item("model words here", show=False, reason="transcribe")
    queue.add(hidden)
    assert queue.get(hidden.id).model_text == ""
    assert queue.items()[0].model_text == ""
    with pytest.raises(InvalidArgument, match="no suggestion to accept"):
        queue.accept(hidden.id, "alice")
    done = queue.correct(hidden.id, "model words there", "alice")
    assert done.errors == 1 and done.words == 3  # the hidden text was still scored against the person's


def test_bad_requests_name_the_problem(queue: ReviewQueue) -> None:
    with pytest.raises(NotFound, match="review item 'nope' does not exist"):
        queue.accept("nope", "alice")
    with pytest.raises(InvalidArgument, match="status: 'done' is not one of"):
        queue.items("done")
    queue.add(new := item())
    with pytest.raises(InvalidArgument, match="over the limit"):
        queue.correct(new.id, "x " * 6000, "alice")


def test_retention_deletes_old_items_with_their_audio(tmp_path: Path) -> None:
    q = ReviewQueue(tmp_path / "r.sqlite3", retention_days=1)
    try:
        q.add(old := item(created=time.time() - 2 * 86400))
        q.add(fresh := item())
        assert q.purge() == 1
        with pytest.raises(NotFound):
            q.get(old.id)
        assert q.get(fresh.id).id == fresh.id
    finally:
        q.close()


def test_the_queue_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    q = ReviewQueue(path)
    q.add(kept := item())
    q.correct(kept.id, "the quick brown fox jumped", "alice")
    q.close()
    again = ReviewQueue(path)
    try:
        assert again.get(kept.id).status == "corrected"
        assert [i.id for i in again.reviewed()] == [kept.id]
        assert next(iter(again.reviewed())).audio
    finally:
        again.close()

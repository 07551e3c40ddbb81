"""The rules of an interrupted `transcribe`, with real signals sent to this process: paced, the first
SIGINT stops reading and the work ends normally, a second stops it at once; unpaced, the first stops
it at once; with no file in work, stopping at once cancels the run."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import Iterator

import numpy as np

from voxrelay.edge.events import AudioBlock
from voxrelay.edge.interrupt import Interruption


def endless() -> Iterator[AudioBlock]:
    for i in itertools.count():
        yield AudioBlock(np.zeros(320, np.int16), i * 0.02)


async def read_all(interruption: Interruption, after_reading: float = 0.0) -> int:
    """Read blocks (SIGINT after the tenth) until they end, then go on working for ``after_reading`` s."""
    count = 0
    for _ in interruption.blocks(endless()):
        count += 1
        if count == 10:
            os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.001)
    await asyncio.sleep(after_reading)
    return count


def test_paced_the_first_signal_stops_reading_and_the_work_finishes() -> None:
    async def scenario() -> tuple[int | None, bool]:
        interruption = Interruption(finish_in_flight=True)
        with interruption.installed():
            return await interruption.run(read_all(interruption))

    count, interrupted = asyncio.run(scenario())
    assert interrupted and count is not None and 10 <= count < 1000


def test_paced_a_second_signal_stops_at_once() -> None:
    async def scenario() -> tuple[int | None, bool]:
        interruption = Interruption(finish_in_flight=True)
        loop = asyncio.get_running_loop()
        with interruption.installed():
            # The second signal comes while the work still finishes its segment (an hour, were it let).
            loop.call_later(0.5, os.kill, os.getpid(), signal.SIGINT)
            return await interruption.run(read_all(interruption, after_reading=3600))

    assert asyncio.run(scenario()) == (None, True)


def test_unpaced_the_first_signal_stops_at_once() -> None:
    async def scenario() -> tuple[int | None, bool]:
        interruption = Interruption(finish_in_flight=False)
        with interruption.installed():
            return await interruption.run(read_all(interruption, after_reading=3600))

    assert asyncio.run(scenario()) == (None, True)


def test_with_no_file_in_work_stopping_at_once_cancels_the_run() -> None:
    async def scenario() -> str:
        interruption = Interruption(finish_in_flight=False)
        try:
            with interruption.installed():
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.sleep(3600)  # connecting, say
        except asyncio.CancelledError:
            return "interrupted" if interruption.requested else "cancelled"
        return "not stopped"

    assert asyncio.run(scenario()) == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are gone again

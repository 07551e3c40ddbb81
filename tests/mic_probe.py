"""Runs MicSource in a process of its own, for tests/test_mic.py.

PortAudio reads the ALSA configuration once, when it initialises, so each capture against a virtual
device runs here, in a subprocess started with ``ALSA_CONFIG_PATH`` set. Usage:

    python tests/mic_probe.py SCENARIO '{"json": "arguments"}' OUT_DIR

prints one JSON object (the scenario's result) as the last line of stdout; captured audio goes to
``OUT_DIR/blocks.npz`` (``samples``: all blocks concatenated, ``starts`` and ``lengths`` per block).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxrelay.edge.capture.mic import MicSource, list_input_devices
from voxrelay.errors import VoxrelayError


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def save_blocks(out: Path, blocks: list[Any]) -> None:
    np.savez(
        out / "blocks.npz",
        samples=np.concatenate([b.samples for b in blocks]) if blocks else np.zeros(0, np.int16),
        starts=np.array([b.start for b in blocks], dtype=np.float64),
        lengths=np.array([len(b.samples) for b in blocks], dtype=np.int64),
        dtypes=np.array(sorted({str(b.samples.dtype) for b in blocks})),
    )


def devices(out: Path) -> Any:
    return [dataclasses.asdict(d) for d in list_input_devices()]


def capture(
    out: Path,
    device: int | str | None,
    seconds: float,
    device_samplerate: int | None = None,
    queue_seconds: float = 5.0,
    stall_after: int | None = None,
    stall_seconds: float = 0.0,
) -> Any:
    """Take blocks until one starts at ``seconds`` or later; optionally stall once, like a slow consumer."""
    blocks = []
    with MicSource(device, device_samplerate=device_samplerate, queue_seconds=queue_seconds) as mic:
        for block in mic.blocks():
            blocks.append(block)
            if len(blocks) == stall_after:
                time.sleep(stall_seconds)
            if block.start >= seconds:
                mic.stop()
    save_blocks(out, blocks)
    return {
        "name": mic.name,
        "device_samplerate": mic.device_samplerate,
        "channels": mic.channels,
        "overflows": mic.overflows,
        "dropped_frames": mic.dropped_frames,
    }


def stop_from_thread(out: Path, device: str, queue_seconds: float) -> Any:
    """A consumer thread iterates blocks(); this thread calls stop() once it has a few."""
    mic = MicSource(device, queue_seconds=queue_seconds)
    got: list[Any] = []
    some = threading.Event()
    errors: list[str] = []

    def consume() -> None:
        try:
            for block in mic.blocks():
                got.append(block)
                if len(got) == 5:
                    some.set()
        except Exception as err:  # reported to the test
            errors.append(repr(err))
        some.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    some.wait(30)
    mic.stop()
    at_stop = len(got)
    consumer.join(30)
    return {
        "consumer_finished": not consumer.is_alive(),
        "errors": errors,
        "after_stop": len(got) - at_stop,
        "blocks_per_queue": round(queue_seconds / 0.02),
    }


def lifecycle(out: Path, device: str) -> Any:
    """OS threads before, during and after a capture left by ``with``, by ``break``, or never started."""
    before = os_threads()
    with MicSource(device) as mic:
        blocks = mic.blocks()
        for _ in range(3):
            next(blocks)
        during = os_threads()
    after_with = os_threads()
    try:
        mic.blocks()
        second_call = "no error"
    except RuntimeError as err:
        second_call = str(err)
    for _ in MicSource(device).blocks():
        break
    after_break = os_threads()
    stopped_first = MicSource(device)
    stopped_first.stop()
    blocks_after_early_stop = len(list(stopped_first.blocks()))
    return {
        "before": before,
        "during": during,
        "after_with": after_with,
        "after_break": after_break,
        "after_early_stop": os_threads(),
        "second_call": second_call,
        "blocks_after_early_stop": blocks_after_early_stop,
    }


def error(out: Path, device: int | str | None) -> Any:
    try:
        mic = MicSource(device)
    except VoxrelayError as err:
        return {"type": type(err).__name__, "message": err.message}
    return {"type": None, "message": f"opened {mic.name}"}


SCENARIOS = {f.__name__: f for f in (devices, capture, stop_from_thread, lifecycle, error)}

if __name__ == "__main__":
    scenario, arguments, out_dir = sys.argv[1:4]
    result = SCENARIOS[scenario](Path(out_dir), **json.loads(arguments))
    print(json.dumps(result))

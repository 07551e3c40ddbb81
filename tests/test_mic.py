"""Microphone capture through PortAudio from virtual ALSA capture devices: no sound card needed.

Each virtual microphone is an ALSA ``file`` PCM over a ``null`` slave: capture reads the ``null``
slave (silence, delivered as fast as it is asked for) and replaces it with the next bytes of its
``infile``. The configuration is a file of its own, named by ``ALSA_CONFIG_PATH``, so the test sees
only these devices (no sound card, no PulseAudio, nothing of ~/.asoundrc) and changes nothing outside
tmp_path. PortAudio reads it when it initialises, so every capture runs in a subprocess
(tests/mic_probe.py).

The ``file`` plugin converts nothing: ``infile`` is read in the format the client opens the device
with. MicSource opens mono float32 (PortAudio passes FLOAT_LE through when the device offers it, as
``file`` over ``null`` does), at 16 kHz unless told a device rate: so the tone files are raw float32
mono at the rate each test opens the device at.

Needs Debian ``libportaudio2`` (which brings ``libasound2`` and its ``libasound2-data``); skips
with the reason when PortAudio or the ALSA ``file``/``null`` plugins are missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PROBE = Path(__file__).with_name("mic_probe.py")
ROOT = Path(__file__).resolve().parents[1]
SECONDS = 3.0  # length of the tone in each file
AMPLITUDE = 0.5
QUEUE = SECONDS + 2  # seconds of queue: the first QUEUE seconds captured are never dropped


def _missing_audio_stack() -> str | None:
    if not sys.platform.startswith("linux"):
        return "virtual ALSA capture devices need Linux"
    if importlib.util.find_spec("sounddevice") is None:
        return "the Python package sounddevice is not installed (pip install 'voxrelay[mic]')"
    if ctypes.util.find_library("portaudio") is None:
        return "PortAudio is not installed (Debian: apt-get install libportaudio2)"
    asound = ctypes.util.find_library("asound")
    if asound is None:
        return "ALSA's libasound is not installed (Debian: apt-get install libasound2)"
    library = ctypes.CDLL(asound)
    for plugin in ("file", "null"):
        if not hasattr(library, f"_snd_pcm_{plugin}_open"):
            return f"this libasound ({asound}) was built without the ALSA {plugin!r} PCM plugin"
    return None


pytestmark = pytest.mark.skipif(_missing_audio_stack() is not None, reason=str(_missing_audio_stack()))


def chirp(rate: int) -> np.ndarray:
    """A sweep from 300 to 900 Hz: the frequency at each moment tells where in the file a block lies."""
    t = np.arange(round(SECONDS * rate)) / rate
    return AMPLITUDE * np.sin(2 * np.pi * (300 * t + 100 * t * t))


def expected_int16(rate: int) -> np.ndarray:
    return np.rint(chirp(rate).astype(np.float32) * 32768.0).astype(np.int16)


def file_pcm(infile: Path) -> str:
    return f"""{{
    type file
    slave.pcm {{ type null }}
    file "/dev/null"
    infile "{infile}"
    format "raw"
}}"""


@pytest.fixture(scope="module")
def alsa_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ALSA configuration with tone devices at 16 and 48 kHz and the 16 kHz one as ``default``."""
    folder = tmp_path_factory.mktemp("alsa")
    tones = {}
    for rate in (16000, 48000):
        tones[rate] = folder / f"chirp_{rate}_f32le_mono.raw"
        # A second of silence after the tone: the tests that stop soon after it never read past
        # the file's end, where PortAudio keeps delivering the stale contents of its read buffer.
        np.concatenate([chirp(rate), np.zeros(rate)]).astype("<f4").tofile(tones[rate])
    conf = folder / "asound.conf"
    conf.write_text(
        f"pcm.voxrelay_tone16k {file_pcm(tones[16000])}\n"
        f"pcm.voxrelay_tone48k {file_pcm(tones[48000])}\n"
        f"pcm.default {file_pcm(tones[16000])}\n"
    )
    return conf


@pytest.fixture(scope="module")
def no_input_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ALSA configuration whose only device plays (PortAudio 19.6 needs some ``pcm`` entry)."""
    conf = tmp_path_factory.mktemp("alsa_no_input") / "asound.conf"
    conf.write_text("pcm.default {\n    type asym\n    playback.pcm { type null }\n}\n")
    return conf


def probe(conf: Path, out: Path, scenario: str, **arguments: Any) -> Any:
    env = {**os.environ, "ALSA_CONFIG_PATH": str(conf)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-W", "error", "-W", "ignore::DeprecationWarning", str(PROBE)]
    done = subprocess.run(
        [*command, scenario, json.dumps(arguments), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{scenario} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_blocks(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(out / "blocks.npz") as data:
        assert list(data["dtypes"]) == ["int16"]
        return data["samples"], data["starts"], data["lengths"]


def assert_contiguous_over_the_tone(starts: np.ndarray) -> None:
    """Blocks follow each other every 20 ms over the whole tone.

    The ``null`` slave never makes capture wait, so the device delivers audio far faster than real
    time and the queue fills up; with ``QUEUE`` seconds of queue nothing of the tone itself is dropped.
    """
    over_tone = starts[starts < SECONDS]
    assert len(over_tone) == SECONDS / 0.02
    np.testing.assert_allclose(over_tone, np.arange(len(over_tone)) * 0.02, atol=1e-9)


def test_lists_the_virtual_devices(alsa_conf: Path, tmp_path: Path) -> None:
    devices = {d["name"]: d for d in probe(alsa_conf, tmp_path, "devices")}

    assert set(devices) == {"voxrelay_tone16k", "voxrelay_tone48k", "default"}
    for device in devices.values():
        assert device["host_api"] == "ALSA"
        assert device["max_input_channels"] >= 1
        assert device["default_samplerate"] > 0
    assert [name for name, d in devices.items() if d["is_default"]] == ["default"]


@pytest.mark.parametrize(
    ("device", "name"),
    [("TONE16K", "voxrelay_tone16k"), (0, "voxrelay_tone16k"), (None, "default")],
    ids=["by-part-of-name", "by-index", "default"],
)
def test_captures_the_signal_at_16k(alsa_conf: Path, tmp_path: Path, device: str | int | None, name: str) -> None:
    info = probe(alsa_conf, tmp_path, "capture", device=device, seconds=SECONDS, queue_seconds=QUEUE)
    samples, starts, lengths = load_blocks(tmp_path)

    assert info["name"] == f"mic:{name}"
    assert (info["device_samplerate"], info["channels"]) == (16000, 1)
    assert set(lengths) == {320}, "20 ms blocks at 16 kHz"
    assert_contiguous_over_the_tone(starts)
    expected = expected_int16(16000)
    assert len(samples) >= len(expected)
    np.testing.assert_array_equal(samples[: len(expected)], expected)
    rms = np.sqrt(np.mean(samples[: len(expected)].astype(np.float64) ** 2))
    assert rms == pytest.approx(AMPLITUDE / np.sqrt(2) * 32768, rel=0.01)


def test_resamples_a_48k_device_to_16k(alsa_conf: Path, tmp_path: Path) -> None:
    info = probe(
        alsa_conf,
        tmp_path,
        "capture",
        device="tone48k",
        device_samplerate=48000,
        seconds=SECONDS,
        queue_seconds=QUEUE,
    )
    samples, starts, lengths = load_blocks(tmp_path)

    assert (info["device_samplerate"], info["channels"]) == (48000, 1)
    assert set(lengths[starts < SECONDS]) == {320}
    assert_contiguous_over_the_tone(starts)
    # soxr's stream is delay-compensated: sample n of the output is the signal at n / 16 kHz.
    expected = chirp(16000) * 32768
    error = np.abs(samples[: len(expected)] - expected)
    # Away from the tone's ends (where the resampler's filter sees the jumps from and to silence):
    assert error[160:-160].max() < 0.005 * 32768, "within 0.5 % of full scale"
    assert error[:160].max() < 0.05 * 32768
    spectrum = np.abs(np.fft.rfft(samples[16000:17600] * np.hanning(1600)))
    assert np.argmax(spectrum) * 10 == pytest.approx(300 + 200 * 1.05, abs=20), "Hz at t = 1.05 s"


def test_stop_from_another_thread_ends_blocks(alsa_conf: Path, tmp_path: Path) -> None:
    result = probe(alsa_conf, tmp_path, "stop_from_thread", device="tone16k", queue_seconds=0.5)

    assert result["consumer_finished"]
    assert result["errors"] == []
    # After stop() the consumer gets at most what was queued (plus a chunk in flight), then the end.
    assert result["after_stop"] <= result["blocks_per_queue"] + 1


def test_a_slow_consumer_loses_audio_counted_and_timed(alsa_conf: Path, tmp_path: Path) -> None:
    info = probe(
        alsa_conf,
        tmp_path,
        "capture",
        device="tone16k",
        seconds=SECONDS,
        queue_seconds=0.1,
        stall_after=2,
        stall_seconds=0.5,
    )
    samples, starts, lengths = load_blocks(tmp_path)

    assert info["dropped_frames"] > 0, "0.5 s of stall overflows a 0.1 s queue"
    ends = starts + lengths / 16000
    gaps = starts[1:] - ends[:-1]
    assert gaps.min() > -1e-9, "blocks never overlap"
    assert gaps.max() > 0, "the block after a drop starts later, by the audio lost"
    assert gaps.sum() <= info["dropped_frames"] / 16000 + 1e-6
    expected = expected_int16(16000)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    checked = 0
    for start, offset, length in zip(starts, offsets, lengths, strict=False):
        first = round(start * 16000)
        if first + length <= len(expected):  # the tone, not the silence or stale data after it
            np.testing.assert_array_equal(samples[offset : offset + length], expected[first : first + length])
            checked += 1
    assert checked >= 2


def test_releases_the_device_and_its_thread(alsa_conf: Path, tmp_path: Path) -> None:
    result = probe(alsa_conf, tmp_path, "lifecycle", device="tone16k")

    assert result["during"] > result["before"], "PortAudio runs the stream on a thread of its own"
    assert result["after_with"] == result["before"]
    assert result["after_break"] == result["before"], "a generator left by break closes the stream"
    assert result["after_early_stop"] == result["before"]
    assert result["blocks_after_early_stop"] == 0
    assert "only be called once" in result["second_call"]


@pytest.mark.parametrize(
    ("device", "error_type", "words"),
    [
        ("no-such-mic", "InvalidArgument", ["'no-such-mic'", "voxrelay_tone16k", "voxrelay_tone48k"]),
        (99, "InvalidArgument", ["index 99", "voxrelay_tone16k"]),
        ("voxrelay_tone", "InvalidArgument", ["ambiguous", "voxrelay_tone16k", "voxrelay_tone48k"]),
    ],
)
def test_an_unknown_device_names_the_available_ones(
    alsa_conf: Path, tmp_path: Path, device: str | int, error_type: str, words: list[str]
) -> None:
    result = probe(alsa_conf, tmp_path, "error", device=device)

    assert result["type"] == error_type
    for word in words:
        assert word in result["message"]


def test_no_input_device_at_all(no_input_conf: Path, tmp_path: Path) -> None:
    assert probe(no_input_conf, tmp_path, "devices") == []
    result = probe(no_input_conf, tmp_path, "error", device=None)

    assert result["type"] == "AudioError"
    assert "no audio input device" in result["message"]

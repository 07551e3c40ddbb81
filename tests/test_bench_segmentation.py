"""``scripts/bench_segmentation.py`` on one tiny constructed condition: three dev utterances, 1.2 s pauses.

The audio is made with sox from the dev set (skipped without it), run through the old 1.8 s segmenter
and the embedded recognizer (tiny.en), and scored; the figures must be computed and sane.
"""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile

from voxrelay.edge.agent import VadSettings

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "speech"
TINY = ("pocketsphinx_cards_003", "ljspeech_LJ002-0020", "pocketsphinx_goforward")


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_segmentation", ROOT / "scripts" / "bench_segmentation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_segmentation", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench()


@pytest.fixture(scope="module")
def conditions(bench: ModuleType) -> ModuleType:
    """The script's sibling module that makes the constructed audio (imported by the script)."""
    return importlib.import_module("segbench_conditions")


@pytest.fixture(scope="module")
def tiny(conditions: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object, Path]:
    if not (SPEECH / "manifest.jsonl").is_file():
        pytest.skip(f"the dev speech set is not at {SPEECH}")
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    pieces = [p for p in conditions.dev_pieces(SPEECH) if p.id in TINY]
    assert len(pieces) == 3
    plan = conditions.make_plan(pieces, pauses=(1.2, 1.2))
    cache = tmp_path_factory.mktemp("bench-segmentation")
    return plan, conditions.build_condition("turn-taking", plan, cache), cache


def test_pauses_and_latency_from_plain_numbers(bench: ModuleType) -> None:
    speech = ((1.0, 2.0), (2.5, 4.0), (5.2, 6.0))
    assert bench.pauses_of(speech) == [(4.0, 5.2)]
    assert bench.pauses_of(speech, at_least=0.5) == [(2.0, 2.5), (4.0, 5.2)]
    run = bench.Run(segments=[(0.4, 4.4), (4.6, 6.4)], closes=[6.0, 8.1], close_to_result=[0.5, 0.25])
    # The end at 2.0 s lies in the first segment (closed at 6.0 s in audio time, result 0.5 s later).
    assert bench.utterance_latency(run, 2.0) == pytest.approx((4.0, 0.5))
    assert bench.utterance_latency(run, 6.0) == pytest.approx((2.1, 0.25))
    assert bench.utterance_latency(run, 0.2) is None


def test_constructed_labels_follow_the_plan(conditions: ModuleType, tiny: tuple) -> None:
    plan, file, cache = tiny
    info = soundfile.info(str(file.path))
    assert info.samplerate == 16000 and info.channels == 1
    assert file.duration == pytest.approx(info.duration, abs=1e-3)
    assert len(file.utterances) == len(file.speech) == 3
    for u, (start, end) in zip(file.utterances, file.speech, strict=True):
        assert u.start <= start < end <= u.end
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(file.speech)]
    assert gaps == pytest.approx([1.2, 1.2], abs=1e-3)
    assert file.speech[0][0] == pytest.approx(conditions.LEAD_SECONDS + conditions.MARGIN, abs=0.06)
    # The same plan is not made twice, and made again it gives the same bytes.
    assert conditions.build_condition("turn-taking", plan, cache) == file
    made = file.path.read_bytes()
    shutil.rmtree(file.path.parent)
    assert conditions.build_condition("turn-taking", plan, cache) == file
    assert file.path.read_bytes() == made


def test_other_conditions_are_made(conditions: ModuleType, tiny: tuple) -> None:
    plan, file, cache = tiny
    phone = conditions.build_condition("telephone", plan, cache)
    assert soundfile.info(str(phone.path)).samplerate == 8000
    assert phone.speech == file.speech
    fast = conditions.build_condition("fast", plan, cache)
    spoken = [end - start for start, end in fast.speech]
    assert spoken == pytest.approx([(end - start) / 2 for start, end in file.speech], abs=0.02)
    far = conditions.build_condition("far-field", plan, cache)
    near_level = np.sqrt(np.mean(soundfile.read(str(file.path))[0] ** 2))
    far_level = np.sqrt(np.mean(soundfile.read(str(far.path))[0] ** 2))
    assert far_level < near_level / 5  # attenuated by 20-35 dB, with reverb and noise added


def test_metrics_of_the_old_segmenter_on_fast_turn_taking(bench: ModuleType, tiny: tuple) -> None:
    _, file, _ = tiny
    systems = bench.systems_for(["old"], VadSettings())
    (row,) = bench.run_benchmark({"turn-taking": [file]}, systems)
    assert 0 < row.vad["recall"] <= 1 and 0 < row.vad["precision"] <= 1 and 0 < row.vad["f1"] <= 1
    assert row.segments >= 1 and row.segment_max >= row.segment_p95 >= row.segment_p50 > 0
    assert row.segment_max <= file.duration
    # 1.2 s pauses are shorter than the old 1.8 s hangover: the segmenter bridges them.
    assert row.long_pauses == 2 and row.bridged_share > 0
    assert row.wer_alone is not None and row.wer_alone < 0.5
    assert row.wer_e2e is not None and row.wer_e2e < 0.5
    assert len(row.latencies) == 3
    for waited, recognised in row.latencies:
        assert waited > 0 and recognised > 0
    # The last utterance's segment closes only after the hangover's worth of non-speech.
    assert row.latencies[-1][0] > 1.0
    assert row.latency_p95 >= row.latency_p50 > 0

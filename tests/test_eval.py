"""`voxrelay eval`: scoring with answers worked out by hand, then the command on real speech over a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from tests.conftest import ROOT, SPEECH, load_pcm16
from voxrelay.edge.results import SegmentResult
from voxrelay.errors import InvalidArgument
from voxrelay.quality.attribution import Attribution, TimedWord, attribute, coverage, reference_timings
from voxrelay.quality.evaluate import build_report
from voxrelay.quality.manifest import Entry, Utterance, read_manifest
from voxrelay.quality.runner import FileRun, Latency, Recognized, Span
from voxrelay.quality.vadscore import FrameCounts, frame_mask, score_vad, summarize
from voxrelay.quality.wer import word_errors

# -- VAD scores, worked out by hand -----------------------------------------------------------------
#
# 5 s of audio = 500 frames of 10 ms. Labelled speech: 1.0-2.0 s and 3.0-4.0 s (frames 100-199 and
# 300-399: 200 frames). Detected: 0.5-1.5 s and 3.0-4.5 s (frames 50-149 and 300-449: 250 frames).
#   TP = 100-149 + 300-399 = 50 + 100 = 150    FP = 50-99 + 400-449 = 100    FN = 150-199 = 50
#   precision = 150 / 250 = 0.6    recall = 150 / 200 = 0.75    F1 = 300 / 450 = 2/3
REFERENCE = [(1.0, 2.0), (3.0, 4.0)]
DETECTED = [(0.5, 1.5), (3.0, 4.5)]


def test_frame_scores_by_hand() -> None:
    score = score_vad(REFERENCE, DETECTED, 5.0)
    assert score.frames == FrameCounts(tp=150, fp=100, fn=50)
    assert score.frames.precision == 0.6
    assert score.frames.recall == 0.75
    assert score.frames.f1 == pytest.approx(2 / 3, abs=1e-12)
    first, second = score.regions
    # The first region lost its last 0.5 s; the second is covered from onset to offset.
    assert (first.segments, first.onset_clip, first.offset_clip) == (1, 0.0, 0.5)
    assert (second.segments, second.onset_clip, second.offset_clip) == (1, 0.0, 0.0)
    assert score.false_alarms == 0 and score.missed_regions == 0


def test_collar_leaves_boundary_frames_out() -> None:
    # ±0.25 s around 1.0, 2.0, 3.0 and 4.0 s drops frames 75-124, 175-224, 275-324, 375-424:
    #   TP = 125-149 + 325-374 = 25 + 50    FP = 50-74 + 425-449 = 25 + 25    FN = 150-174 = 25
    score = score_vad(REFERENCE, DETECTED, 5.0, collar=0.25)
    assert score.frames == FrameCounts(tp=75, fp=50, fn=25)
    assert (score.frames.precision, score.frames.recall) == (0.6, 0.75)


def test_missed_regions_false_alarms_and_empty_scores() -> None:
    score = score_vad([(1.0, 2.0)], [(3.0, 3.5)], 4.0)
    assert score.frames == FrameCounts(tp=0, fp=50, fn=100)
    assert (score.frames.precision, score.frames.recall, score.frames.f1) == (0.0, 0.0, 0.0)
    assert score.missed_regions == 1 and score.false_alarms == 1
    nothing = score_vad([], [], 3.0).frames
    assert (nothing.precision, nothing.recall, nothing.f1) == (None, None, None)


def test_frames_follow_their_centres_and_splits_are_counted() -> None:
    # Cobra's 32 ms frame labels: 0.896-1.696 s holds the centres of frames 90-169 (0.905 .. 1.695).
    assert int(frame_mask([(0.896, 1.696)], 300).sum()) == 80
    assert list(np.flatnonzero(frame_mask([(0.896, 1.696)], 300))[[0, -1]]) == [90, 169]
    split = score_vad([(0.0, 10.0)], [(0.0, 4.0), (5.0, 10.0)], 10.0)
    pooled = summarize([split, score_vad(REFERENCE, DETECTED, 5.0)])
    assert pooled["frames"] == {"tp": 900 + 150, "fp": 100, "fn": 100 + 50}
    assert pooled["segments_per_region"] == (2 + 1 + 1) / 3
    assert pooled["offset_clip_ms"] == {"mean": pytest.approx(500 / 3), "max": 500.0}
    assert pooled["regions"] == 3 and pooled["missed_regions"] == 0
    bridged = score_vad([(1.0, 2.0), (2.5, 3.0)], [(0.9, 3.2)], 4.0)  # one segment over a 0.5 s pause
    assert bridged.regions_per_segment == (2,) and bridged.frames == FrameCounts(tp=150, fp=80, fn=0)
    assert summarize([bridged])["regions_per_segment"] == 2.0


# -- attribution, worked out by hand ----------------------------------------------------------------

FOX = "The quick brown fox jumps over the lazy dog."
WORDS = [TimedWord(w, float(i), float(i + 1)) for i, w in enumerate(FOX.rstrip(".").split())]  # 1 s each


def test_reference_words_take_the_recognizers_timings() -> None:
    assert reference_timings(FOX, "en", WORDS, (0.0, 9.0)) == [(float(i), float(i + 1)) for i in range(9)]
    # A word the recognizer missed lies between its neighbours; a substituted word keeps its slot.
    missing = [w for w in WORDS if w.text != "brown"]
    crown = [TimedWord("crown", 2.0, 3.0) if w.text == "brown" else w for w in WORDS]
    assert reference_timings(FOX, "en", missing, (0.0, 9.0))[2] == (2.0, 3.0)
    assert reference_timings(FOX, "en", crown, (0.0, 9.0))[2] == (2.0, 3.0)
    assert reference_timings(FOX, "en", [], (0.0, 9.0))[8] == (8.0, 9.0)  # spread over the bounds


def test_errors_are_charged_to_the_vad_or_the_recognizer() -> None:
    segments = [(1.5, 9.0)]  # "The" (0-1 s) was dropped, "quick" (1-2 s) lost its first half
    assert coverage((0.0, 1.0), segments) == 0.0 and coverage((1.0, 2.0), segments) == 0.5
    spans = reference_timings(FOX, "en", WORDS, (0.0, 9.0))
    # End to end lost "the quick" and added "cat": 2 deletions on lost audio, 1 insertion.
    got = attribute(FOX, "brown fox jumps over the lazy dog cat", "en", spans, segments)
    assert got == Attribution(
        reference_words=9, e2e_errors=3, vad_errors=2, recognizer_errors=1, dropped_words=1, clipped_words=1
    )
    # A clipped word that was still recognised is no error; a substitution on sent audio is the recognizer's.
    got = attribute(FOX, "quick brown fox jumps over the hazy dog", "en", spans, segments)
    assert got == Attribution(9, 2, 1, 1, 1, 1)
    assert got.e2e_errors == word_errors(FOX, "quick brown fox jumps over the hazy dog").errors


# -- the report from runs given by hand -------------------------------------------------------------


def fake_result(seq: int, text: str, words: tuple[Any, ...] = ()) -> SegmentResult:
    return SegmentResult(segment_id=f"d/s/{seq}", sequence=seq, text=text, start=0.0, end=0.0, words=words)


def test_report_figures_from_given_runs() -> None:
    fox = Entry("fox.wav", Path("fox.wav"), (Utterance("fox", FOX, "en"),), ((0.0, 9.0),), "manual")
    fox_run = FileRun(
        fox,
        duration=10.0,
        segments=(Span(1.5, 9.0),),
        results=(fake_result(0, "brown fox jumps over the lazy dog cat"),),
        latencies=(Latency(1.0, {"edge_queue": 0.0, "network": 0.1, "server_queue": 0.2, "inference": 0.7}),),
        alone=(Recognized(FOX, tuple(WORDS)),),
    )
    hola = Entry("hola.wav", Path("hola.wav"), (Utterance("hola", "Hola amigos", "es"),))
    hola_run = FileRun(
        hola,
        duration=2.0,
        segments=(Span(0.0, 2.0),),
        results=(fake_result(0, "Hola amigo"),),
        latencies=(Latency(3.0, {"edge_queue": 0.0, "network": 0.0, "server_queue": 1.0, "inference": 2.0}),),
        alone=(Recognized("Oh la amigos", (TimedWord("Oh", 0.0, 0.5),)),),
    )
    missing = FileRun(Entry("gone.wav", Path("gone.wav"), speech=((0.0, 1.0),)), error="gone.wav: no such audio file")
    report = build_report([fox_run, hola_run, missing], multilingual=False, collar=0.0, context={"model": {}})
    json.dumps(report)  # JSON-ready
    # VAD over the fox file only: labelled 0-9 s (900 frames) of 10 s, detected 1.5-9 s (750 frames).
    assert report["vad"]["frames"] == {"tp": 750, "fp": 0, "fn": 150}
    assert (report["vad"]["precision"], report["vad"]["recall"]) == (1.0, 750 / 900)
    assert report["vad"]["files"] == 1
    # Headline (English-only model): the fox file. Alone 0 errors; end to end 3 of 9 words.
    assert report["asr"]["wer"] == 0.0 and report["asr"]["files"] == 1
    assert report["e2e"]["wer"] == pytest.approx(3 / 9)
    # Spanish is reported on its own: "hola amigos" vs "hola amigo" = 1 substitution of 2 words.
    assert report["e2e"]["by_language"]["es"]["wer"] == 0.5
    assert report["asr"]["by_language"]["es"]["wer"] == 1.0  # "oh la amigos": 1 substitution + 1 insertion
    att = report["attribution"]
    assert (att["e2e_errors"], att["vad_errors"], att["recognizer_errors"], att["asr_errors"]) == (3, 2, 1, 0)
    assert att["segmentation_effect"] == 1 and att["wer_points"]["vad"] == pytest.approx(200 / 9)
    assert report["latency"]["p50_s"] == 2.0 and report["latency"]["p95_s"] == pytest.approx(2.9)
    assert report["latency"]["stages"]["inference"]["mean_s"] == pytest.approx(1.35)
    assert report["per_file"][2]["error"] == "gone.wav: no such audio file"  # as given
    assert report["per_file"][0]["utterances"][0]["attribution"]["dropped_words"] == 1


def test_the_report_says_how_well_confidence_predicts_errors_and_its_calibration_loads(tmp_path: Path) -> None:
    from voxrelay.monitoring.calibration import load_calibration

    # Eight one-utterance files: the lower the avg_logprob, the more of "the cat sat down" is wrong.
    hyps = ["the cat sat down", "the cat sat town", "a cat set town", "a bat set town", "the cat sat down"]
    logprobs = [-0.1, -0.5, -0.9, -1.4, -0.15]
    runs = []
    for i in range(8):
        hyp, lp = hyps[i % 5], logprobs[i % 5] - 0.01 * i
        entry = Entry(f"f{i}.wav", Path(f"f{i}.wav"), (Utterance(f"u{i}", "the cat sat down", "en"),))
        runs.append(
            FileRun(
                entry,
                duration=2.0,
                segments=(Span(0.0, 2.0),),
                results=(fake_result(0, hyp),),
                alone=(Recognized(hyp, (), avg_logprob=lp, no_speech_prob=0.01 * i, compression_ratio=1.2),),
            )
        )
    report = build_report(runs, multilingual=False, collar=0.0, context={}, model="tiny.en")
    json.dumps(report)
    confidence = report["confidence"]
    assert confidence["utterances"] == 8
    logprob = confidence["signals"]["avg_logprob"]
    assert logprob["spearman_rho_with_wer"] > 0.8 and logprob["auroc_any_error"] == 1.0
    assert confidence["estimated_wer"] == pytest.approx(confidence["pooled_wer"], abs=0.05)
    assert "mean_absolute_error" in confidence["leave_one_out"]
    assert report["per_file"][0]["utterances"][0]["signals"]["avg_logprob"] == pytest.approx(-0.1)
    # The calibration inside the report is what serve --calibration loads (the report itself works too).
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    calibration = load_calibration(path)
    assert calibration.model == "tiny.en" and calibration.utterances == 8
    assert calibration.predict(-1.4, 0.0, 1.2) > calibration.predict(-0.1, 0.0, 1.2)
    (tmp_path / "bad.json").write_text(json.dumps({**confidence["calibration"], "coefficients": {"intercept": "x"}}))
    with pytest.raises(InvalidArgument, match=r"coefficients\.intercept: expected a finite number"):
        load_calibration(tmp_path / "bad.json")


def test_words_of_a_multi_utterance_file_go_to_the_nearest_utterance() -> None:
    from voxrelay.edge.results import Word

    entry = Entry(
        "two.wav",
        Path("two.wav"),
        (Utterance("a", "go forward", "en", 1.0, 2.0), Utterance("b", "ten meters", "en", 4.0, 5.0)),
        ((1.0, 2.0), (4.0, 5.0)),
    )
    # Whisper's words carry their leading space; pieces such as "%" or ",000" have none.
    words = (Word(" go", 1.1, 1.3, 1.0), Word(" forward", 1.3, 1.8, 1.0), Word(" ten", 2.8, 3.0, 1.0))
    words2 = (Word(" meters", 4.2, 4.5, 1.0), Word("%", 4.5, 4.6, 1.0))
    run = FileRun(
        entry,
        duration=6.0,
        segments=(Span(0.8, 2.2), Span(2.8, 5.0)),
        results=(fake_result(0, "go forward", words), fake_result(1, "meters", words2)),
        alone=(
            Recognized("go forward", (TimedWord("go", 1.1, 1.3), TimedWord("forward", 1.3, 1.8))),
            Recognized("ten meters", (TimedWord("ten", 4.0, 4.2),)),
        ),
    )
    report = build_report([run], multilingual=False, collar=0.0, context={})
    texts = [u["e2e_text"] for u in report["per_file"][0]["utterances"]]
    assert texts == ["go forward ten", "meters%"]  # "ten" at 2.9 s lies nearer the first utterance


# -- manifests ---------------------------------------------------------------------------------------


def test_manifest_rows_and_clear_errors(tmp_path: Path) -> None:
    good = tmp_path / "m.jsonl"
    rows = [
        {"audio": "a.wav", "text": "hello", "language": "EN"},
        {"audio": "b.wav", "text": None, "speech": [[0.5, 1.0]], "speech_kind": "manual"},
        {"audio": "c.wav", "text": "model output", "text_kind": "none"},
        {
            "audio": "/abs/d.wav",
            "text": "x y",
            "text_kind": "human_reference (concatenation)",
            "utterances": [{"id": "u1", "text": "x", "language": "de", "start": 1, "end": 2, "clip_start": 0.9}],
        },
    ]
    good.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    manifest = read_manifest(good)
    a, b, d = manifest.entries
    assert manifest.skipped == ("c.wav",)
    assert a.path == tmp_path / "a.wav" and a.utterances == (Utterance("a", "hello", "en"),)
    assert b.speech == ((0.5, 1.0),) and not b.has_text
    assert d.path == Path("/abs/d.wav") and d.utterances == (Utterance("u1", "x", "de", 0.9, 2.0),)

    for line, message in [
        ("{not json", "m.jsonl:1: not valid JSON"),
        ('{"text": "hi"}', "m.jsonl:1: 'audio' (the WAV path) is missing"),
        ('{"audio": "a.wav", "speech": [[2, 1]]}', "m.jsonl:1.speech[0]: ends (1 s) before it starts (2 s)"),
        ('{"audio": "a.wav", "speech": [[0, "x"]]}', "m.jsonl:1.speech[0]: 'x' is not a time in seconds"),
        ('{"audio": "a.wav", "text": null}', "no row has a reference transcript or speech labels"),
    ]:
        good.write_text(line + "\n")
        with pytest.raises(InvalidArgument) as info:
            read_manifest(good)
        assert message in info.value.message
    with pytest.raises(InvalidArgument, match="no such manifest file"):
        read_manifest(tmp_path / "missing.jsonl")


# -- the command on real speech over a real server --------------------------------------------------


def voxrelay(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxrelay", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def frames_inside(segments: list[list[float]], duration: float) -> np.ndarray:
    """An independent count: frame i is detected when its centre (i + 0.5) * 10 ms lies in a segment."""
    centres = (np.arange(round(duration * 100)) + 0.5) / 100
    return np.array([any(s <= c < e for s, e in segments) for c in centres], dtype=bool)


def build_mini_set(folder: Path, speech_dir: Path) -> Path:
    """A small labelled set built from the dev set at test time (nothing is copied into the project)."""
    rate = 16000
    silence = np.zeros(3 * rate, dtype=np.int16)
    soundfile.write(str(folder / "silence.wav"), silence, rate, subtype="PCM_16")
    go, cards = (
        load_pcm16(speech_dir / "asr/pocketsphinx_goforward.wav"),
        load_pcm16(speech_dir / "asr/pocketsphinx_cards_001.wav"),
    )
    gap = np.zeros(rate, dtype=np.int16)
    joined = np.concatenate([gap, go, gap, cards, gap])
    soundfile.write(str(folder / "joined.wav"), joined, rate, subtype="PCM_16")
    t_go, t_cards = 1.0 + len(go) / rate, 2.0 + (len(go) + len(cards)) / rate
    rows = [
        # Digital silence labelled as speech at 1-2 s: nothing can be detected, so recall is exactly 0.
        {"audio": str(folder / "silence.wav"), "text": None, "speech": [[1.0, 2.0]]},
        # Labelled speech over the whole file: nothing detected can lie outside it (precision 1).
        {
            "audio": str(speech_dir / "asr/ljspeech_LJ002-0020.wav"),
            "text": "IN EIGHTEEN THIRTEEN",
            "language": "en",
            "speech": [[0.0, 1.54]],
        },
        {
            "audio": str(folder / "joined.wav"),
            "text": "go forward ten meters ten of clubs",
            "text_kind": "human_reference",
            "speech": [[1.0, t_go], [t_go + 1.0, t_cards]],
            "utterances": [
                {"id": "go", "text": "go forward ten meters", "language": "en", "start": 1.0, "end": t_go},
                {"id": "cards", "text": "ten of clubs", "language": "en", "start": t_go + 1.0, "end": t_cards},
            ],
        },
        {"audio": str(folder / "not-there.wav"), "text": "lost", "language": "en"},
        {"audio": str(speech_dir / "long/silero_vad_test.wav"), "text": None},  # nothing to score: skipped
    ]
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@pytest.mark.slow
def test_eval_on_a_small_labelled_set(server: Any, speech_dir: Path, tmp_path: Path) -> None:
    manifest = build_mini_set(tmp_path, speech_dir)
    out, plots = tmp_path / "report.json", tmp_path / "plots"
    # -o names the folder: the report is DIR/report.json
    run = voxrelay("eval", str(manifest), "--server", server.address, "-o", str(tmp_path), "--plots", str(plots))
    assert run.returncode == 1, run.stderr  # one file is missing
    errors = [line for line in run.stderr.splitlines() if line.startswith("voxrelay eval:")]
    assert errors == [f"voxrelay eval: {tmp_path / 'not-there.wav'}: no such audio file"]
    assert "Traceback" not in run.stderr
    report = json.loads(out.read_text())
    silence, lj, joined, missing = report["per_file"]
    assert report["skipped"] == [str(speech_dir / "long/silero_vad_test.wav")]

    # Known answers: digital silence sends nothing; the all-speech file has no false positive.
    assert silence["segments"] == [] and silence["vad"]["frames"] == {"tp": 0, "fp": 0, "fn": 100}
    assert silence["vad"]["recall"] == 0.0 and silence["vad"]["missed_regions"] == 1
    assert lj["vad"]["frames"]["fp"] == 0 and lj["vad"]["precision"] == 1.0
    # Every frame figure matches an independent count over the segments the report lists.
    tp = fp = fn = 0
    for f in (silence, lj, joined):
        ref, det = frames_inside(f["speech"], f["duration_s"]), frames_inside(f["segments"], f["duration_s"])
        assert f["vad"]["frames"] == {
            "tp": int((ref & det).sum()),
            "fp": int((~ref & det).sum()),
            "fn": int((ref & ~det).sum()),
        }
        tp, fp, fn = tp + int((ref & det).sum()), fp + int((~ref & det).sum()), fn + int((ref & ~det).sum())
    assert report["vad"]["frames"] == {"tp": tp, "fp": fp, "fn": fn} and report["vad"]["files"] == 3
    assert report["vad"]["f1"] == 2 * tp / (2 * tp + fp + fn)
    assert lj["vad"]["recall"] > 0.7  # real speech is found

    # WERs match the texts the report shows, recomputed here.
    utterances = lj["utterances"] + joined["utterances"]
    assert [u["id"] for u in joined["utterances"]] == ["go", "cards"]
    for which in ("asr", "e2e"):
        pooled = sum((word_errors(u["reference"], u[f"{which}_text"]) for u in utterances), start=word_errors("", ""))
        assert report[which]["wer"] == pytest.approx(pooled.wer)
        assert report[which]["utterances"] == 3 and report[which]["files"] == 2
        assert report[which]["wer"] < 0.5
    att = report["attribution"]
    e2e_errors = sum(word_errors(u["reference"], u["e2e_text"]).errors for u in utterances)
    assert att["e2e_errors"] == e2e_errors == att["vad_errors"] + att["recognizer_errors"]
    assert att["recognizer_errors"] - att["asr_errors"] == att["segmentation_effect"]
    assert missing["error"] == "no such audio file" and missing["audio"].endswith("not-there.wav")
    assert report["latency"]["segments"] == sum(len(f["segments"]) for f in report["per_file"]) >= 2
    assert report["latency"]["p50_s"] > 0

    for label in ("VAD", "ASR", "E2E", "LAT"):
        assert any(line.startswith(label) for line in run.stdout.splitlines()), run.stdout
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == [
        "vad_timeline_joined.png",
        "vad_timeline_ljspeech_LJ002-0020.png",
        "vad_timeline_silence.png",
        "wer_per_file.png",
    ]
    assert all((plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in pngs)


def test_eval_usage_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "a.wav", "speech": [[3, 1]]}\n')
    run = voxrelay("eval", str(bad), "--report", str(tmp_path / "r.json"), timeout=120)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0
    assert "bad.jsonl:1.speech[0]: ends (1 s) before it starts (3 s)" in run.stderr
    run = voxrelay("eval", str(SPEECH / "manifest.jsonl"), "--report", str(tmp_path), timeout=120)
    assert run.returncode == 2 and "is a folder" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(("hidden", "package"), [("jiwer", "jiwer"), ("whisper_normalizer", "whisper-normalizer")])
def test_eval_checks_its_dependencies_before_any_file(tmp_path: Path, hidden: str, package: str) -> None:
    manifest = tmp_path / "manifest.jsonl"
    sample = ROOT / "samples" / "voxrelay-sample.wav"
    manifest.write_text(json.dumps({"audio": str(sample), "text": "Hello and welcome."}) + "\n")
    # The module is made unimportable in the child, as on an install without the eval extra.
    code = (
        f"import sys; sys.modules[{hidden!r}] = None; from voxrelay.cli import main; "
        f"sys.exit(main(['eval', {str(manifest)!r}, '-o', {str(tmp_path / 'out')!r}]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 1, run.stderr
    assert f"needs the Python package '{package}'" in run.stderr and "voxrelay[eval]" in run.stderr
    assert "[1/1]" not in run.stderr and "Traceback" not in run.stderr  # no file ran
    assert run.stderr.strip().count("\n") == 0

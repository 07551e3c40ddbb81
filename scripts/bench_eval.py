#!/usr/bin/env python3
"""Quality benchmark: ``voxrelay eval`` on the dev set next to faster-whisper used directly.

    python scripts/bench_eval.py [--speech DIR] [--vad auto] [--pace 1.0] [--out DIR]

One run, the same model (tiny.en, int8, beam 5) on both sides:
  - voxrelay: ``voxrelay eval`` with an embedded recognizer: VAD precision/recall/F1 of the segments
    sent, WER of the recognizer alone on whole utterances (Recognize) and end to end (VAD, segmenter,
    uplink), error attribution and latency;
  - faster-whisper directly: its own silero VAD with its defaults (``get_speech_timestamps``) scored
    with the same frame scorer on the same labelled files; ``WhisperModel.transcribe`` on the same
    whole utterances; and on whole files with ``vad_filter=True`` (its VAD in front of Whisper).
Prints the figures side by side and writes the eval report (and charts) into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voxrelay.edge.agent import DEFAULT_VAD, VADS, VadSettings  # noqa: E402
from voxrelay.edge.link.uplink import UplinkSettings  # noqa: E402
from voxrelay.edge.results import SegmentResult, Word  # noqa: E402
from voxrelay.embedded import embedded_recognizer  # noqa: E402
from voxrelay.quality.command import evaluate  # noqa: E402
from voxrelay.quality.evaluate import e2e_texts  # noqa: E402
from voxrelay.quality.manifest import Entry, read_manifest  # noqa: E402
from voxrelay.quality.runner import EvalSettings, FileRun, read_audio  # noqa: E402
from voxrelay.quality.vadscore import VadScore, score_vad, summarize  # noqa: E402
from voxrelay.quality.wer import NO_ERRORS, WordErrors, word_errors  # noqa: E402

DEFAULT_SPEECH = ROOT.parent / "shared" / "data" / "speech"


def run_voxrelay(manifest: Path, out: Path, vad: str, pace: float | None) -> dict:
    import json

    async def go() -> None:
        async with embedded_recognizer(model="tiny.en", beam_size=5) as address:
            uplink = UplinkSettings(server=address, device_id="bench-eval", word_timestamps=True)
            settings = EvalSettings(vad=VadSettings(vad=vad), pace=pace)
            await evaluate(
                read_manifest(manifest),
                uplink,
                settings,
                output=str(out / "report.json"),
                plots=str(out / "plots"),
                quiet=True,
            )

    asyncio.run(go())
    return json.loads((out / "report.json").read_text())


def faster_whisper_side(manifest: Path) -> dict:
    from faster_whisper import WhisperModel
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from voxrelay.models.catalogue import resolve_model

    model = WhisperModel(resolve_model("tiny.en").path, device="cpu", compute_type="int8", cpu_threads=2)
    vad_scores: list[VadScore] = []
    alone, piped = NO_ERRORS, NO_ERRORS
    utterances = 0
    began = time.perf_counter()
    for entry in read_manifest(manifest).entries:
        audio = read_audio(entry).astype(np.float32) / 32768.0
        duration = audio.shape[0] / 16000
        if entry.speech is not None:
            stamps = get_speech_timestamps(audio, VadOptions())
            detected = [(s["start"] / 16000, s["end"] / 16000) for s in stamps]
            vad_scores.append(score_vad(entry.speech, detected, duration))
        english = [u for u in entry.utterances if u.language == "en"]
        if not english:
            continue
        for u in english:
            clip = audio[round((u.start or 0.0) * 16000) : None if u.end is None else round(u.end * 16000)]
            segments, _ = model.transcribe(clip, beam_size=5, language="en")
            alone = alone + word_errors(u.text, " ".join(s.text for s in segments), "en")
            utterances += 1
        piped = piped + _vad_filtered(model, entry, audio, duration)
    return {
        "vad": summarize(vad_scores),
        "asr": alone,
        "e2e": piped,
        "utterances": utterances,
        "seconds": time.perf_counter() - began,
    }


def _vad_filtered(model: object, entry: Entry, audio: np.ndarray, duration: float) -> WordErrors:
    """Whole file through faster-whisper with its VAD; words go to utterances as voxrelay eval assigns them."""
    segments, _ = model.transcribe(  # type: ignore[attr-defined]
        audio, beam_size=5, language="en", vad_filter=True, word_timestamps=True
    )
    results = tuple(
        SegmentResult(
            segment_id=str(i),
            sequence=i,
            text=s.text.strip(),
            start=s.start,
            end=s.end,
            words=tuple(Word(w.word, w.start, w.end, w.probability) for w in s.words or ()),
        )
        for i, s in enumerate(segments)
    )
    texts = e2e_texts(FileRun(entry, duration=duration, results=results))
    total = NO_ERRORS
    for u, text in zip(entry.utterances, texts, strict=True):
        if u.language == "en":
            total = total + word_errors(u.text, text, "en")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH, help="the dev set folder")
    parser.add_argument("--vad", choices=VADS, default=DEFAULT_VAD)
    parser.add_argument("--pace", type=float, help="voxrelay reads files at X times real time (latency)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/voxrelay-bench-eval"))
    args = parser.parse_args()
    manifest = args.speech / "manifest.jsonl"
    if not manifest.is_file():
        print(f"bench_eval: no dev set at {args.speech}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)

    began = time.perf_counter()
    ours = run_voxrelay(manifest, args.out, args.vad, args.pace)
    ours_seconds = time.perf_counter() - began
    theirs = faster_whisper_side(manifest)

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    v, fv = ours["vad"], theirs["vad"]
    rows = [
        ("labelled files (VAD)", str(v["files"]), str(fv["files"])),
        ("VAD precision", num(v["precision"]), num(fv["precision"])),
        ("VAD recall", num(v["recall"]), num(fv["recall"])),
        ("VAD F1", num(v["f1"]), num(fv["f1"])),
        ("English utterances", str(ours["asr"]["utterances"]), str(theirs["utterances"])),
        ("WER, whole utterances", pct(ours["asr"]["wer"]), pct(theirs["asr"].wer)),
        ("WER, through the VAD", pct(ours["e2e"]["wer"]), pct(theirs["e2e"].wer)),
        ("latency p50 / p95 (s)", f"{num(ours['latency']['p50_s'])} / {num(ours['latency']['p95_s'])}", "-"),
        ("wall time (s)", f"{ours_seconds:.0f}", f"{theirs['seconds']:.0f}"),
    ]
    vad_name = f"voxrelay ({ours['vad_settings']['vad']} + segmenter)"
    print(f"\n{'':28}{vad_name:>34}{'faster-whisper (silero, defaults)':>36}")
    for label, a, b in rows:
        print(f"{label:28}{a:>34}{b:>36}")
    att = ours["attribution"]
    print(
        f"\nvoxrelay end-to-end errors: {att['e2e_errors']} = {att['vad_errors']} VAD + "
        f"{att['recognizer_errors']} recognizer (recognizer alone: {att['asr_errors']}); "
        f"pace {args.pace or 'as fast as possible'}; report in {args.out / 'report.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

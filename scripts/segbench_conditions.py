"""The constructed conditions of ``bench_segmentation.py``: dev utterances joined and degraded with sox.

A :class:`Plan` (playback order, pauses, per-utterance attenuation) is drawn once with a seeded
``random.Random`` and serves every condition; :func:`build_condition` runs sox (``-R``: repeatable noise
and dither) into a cache folder named by the plan's digest, and writes the labels of what it placed:
each utterance's clip and labelled speech span in the result, in seconds. See the docstring of
``bench_segmentation.py`` for the conditions themselves.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from voxrelay import SAMPLE_RATE  # noqa: E402
from voxrelay.quality.manifest import Entry, Utterance, read_manifest  # noqa: E402
from voxrelay.quality.runner import read_audio  # noqa: E402

SEED = 20261202
CONDITIONS = ("turn-taking", "far-field", "telephone", "fast")
BUILD_VERSION = 1  # bump when the way conditions are made changes
PAUSES = (0.3, 1.2)  # seconds, speech end to next speech start
ATTENUATION_DB = (20.0, 35.0)
NOISE_DBFS = -65.0
LEAD_SECONDS, TAIL_SECONDS = 1.0, 3.0
MARGIN = 0.05  # audio kept around each utterance's labelled speech

Regions = tuple[tuple[float, float], ...]


class BenchError(Exception):
    """Something the benchmark needs is missing (data, sox): one line for the user."""


# -- the utterances and the audio made from them -------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One dev utterance: its file, reference and labelled speech span in the file."""

    id: str
    text: str
    path: Path
    speech: tuple[float, float]
    labels: str  # "dev labels" or "energy trim"


def energy_trim(samples: np.ndarray) -> tuple[float, float]:
    """Speech onset/offset of an utterance file: the dev set's energy rule (80 Hz high-pass, 10 ms RMS)."""
    from scipy.signal import butter, sosfiltfilt

    x = samples.astype(np.float64) / 32768.0
    x = sosfiltfilt(butter(4, 80, "highpass", fs=SAMPLE_RATE, output="sos"), x)
    hop = SAMPLE_RATE // 100
    frames = x[: x.shape[0] // hop * hop].reshape(-1, hop)
    level = 10 * np.log10(np.mean(frames * frames, axis=1) + 1e-12)
    threshold = max(level.max() - 30, np.percentile(level, 10) + 15, -55.0)
    above = np.concatenate([[False], level > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(int)))
    runs = [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= 5]
    if not runs:
        return 0.0, samples.shape[0] / SAMPLE_RATE
    return runs[0][0] / 100, runs[-1][1] / 100


def dev_pieces(speech: Path) -> list[Piece]:
    """The English single-utterance files of the dev set that have a human reference."""
    rows = [json.loads(line) for line in (speech / "manifest.jsonl").read_text().splitlines() if line.strip()]
    labelled: dict[str, tuple[float, float]] = {}
    for row in rows:
        for u in row.get("utterances") or ():
            offset = u["src_offset_s"] - u["clip_start"]
            labelled[u["audio"]] = (round(u["start"] + offset, 3), round(u["end"] + offset, 3))
    pieces = []
    for row in rows:
        if not (
            row["audio"].startswith("asr/")
            and row.get("language") == "en"
            and row.get("text_kind") == "human_reference"
            and isinstance(row.get("text"), str)
        ):
            continue
        path = speech / row["audio"]
        if row["audio"] in labelled:
            pieces.append(Piece(row["id"], row["text"], path, labelled[row["audio"]], "dev labels"))
        else:
            pieces.append(Piece(row["id"], row["text"], path, energy_trim(read_samples(path)), "energy trim"))
    return pieces


def read_samples(path: Path) -> np.ndarray:
    return read_audio(Entry(path.name, path))


@dataclass(frozen=True)
class Plan:
    """Playback order, pauses after each utterance but the last, and per-utterance attenuation (dB)."""

    pieces: tuple[Piece, ...]
    pauses: tuple[float, ...]
    attenuation: tuple[float, ...]

    def key(self, condition: str) -> str:
        what = [BUILD_VERSION, condition, [(p.id, p.speech) for p in self.pieces], self.pauses, self.attenuation]
        return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


def make_plan(pieces: Sequence[Piece], seed: int = SEED, pauses: Sequence[float] | None = None) -> Plan:
    """Shuffle the utterances and draw the pauses and attenuations (``pauses`` given: in that order, as given)."""
    rng = random.Random(seed)
    order = list(pieces)
    if pauses is None:
        rng.shuffle(order)
        # Stratified: one pause drawn in each of n - 1 equal bins of the range, in shuffled order, so that
        # the whole range is covered however few utterances there are.
        low, high = PAUSES
        width = (high - low) / max(1, len(order) - 1)
        pauses = [round(low + (k + rng.random()) * width, 2) for k in range(len(order) - 1)]
        rng.shuffle(pauses)
    if len(pauses) != len(order) - 1:
        raise ValueError(f"{len(order)} utterances need {len(order) - 1} pauses, got {len(pauses)}")
    attenuation = [round(rng.uniform(*ATTENUATION_DB), 1) for _ in order]
    return Plan(tuple(order), tuple(pauses), tuple(attenuation))


@dataclass(frozen=True)
class BenchFile:
    """One file of a group: what is scored on it.

    ``utterances``: references with their clip in the file (start/end None: the whole file);
    ``speech_ends``: the true end of speech of each; ``speech``: labelled speech regions for the VAD
    scores and pauses (None: not scored); ``recognize``: False for files only the VAD is scored on.
    """

    name: str
    path: Path
    duration: float
    utterances: tuple[Utterance, ...] = ()
    speech_ends: tuple[float, ...] = ()
    speech: Regions | None = None
    recognize: bool = True


def sox(*args: str | Path) -> None:
    done = subprocess.run(["sox", "-R", "-V1", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        raise BenchError(f"sox {' '.join(map(str, args))}: {done.stderr.strip()}")


def frames_of(path: Path) -> int:
    return int(soundfile.info(str(path)).frames)


def build_condition(condition: str, plan: Plan, cache: Path) -> BenchFile:
    """Make (or reuse from ``cache``) the audio of one constructed condition and its labels."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}")
    if shutil.which("sox") is None:
        raise BenchError("sox is needed to make the constructed conditions (apt-get install sox)")
    folder = cache / f"{condition}-{plan.key(condition)}"
    wav, labels = folder / f"{condition}.wav", folder / "labels.json"
    if not labels.is_file():
        work = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        meta = _make(condition, plan, work)
        (work / "labels.json").write_text(json.dumps(meta, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    meta = json.loads(labels.read_text())
    return BenchFile(
        name=condition,
        path=wav,
        duration=meta["duration"],
        utterances=tuple(Utterance(u["id"], u["text"], "en", u["clip"][0], u["clip"][1]) for u in meta["utterances"]),
        speech_ends=tuple(u["speech"][1] for u in meta["utterances"]),
        speech=tuple((u["speech"][0], u["speech"][1]) for u in meta["utterances"]),
    )


def _make(condition: str, plan: Plan, work: Path) -> dict[str, Any]:
    """sox the clips one by one, then the whole; the labels in seconds of the result."""
    rate = SAMPLE_RATE
    margin = round(MARGIN * rate)
    clips: list[Path] = []
    placed: list[dict[str, Any]] = []
    heads, tails, lengths, spans = [], [], [], []
    for i, piece in enumerate(plan.pieces):
        total = frames_of(piece.path)
        a = max(0, round(piece.speech[0] * rate) - margin)
        b = min(total, round(piece.speech[1] * rate) + margin)
        clip = work / f"clip{i:02d}.wav"
        effects: list[str] = ["trim", f"{a}s", f"={b}s", "fade", "t", "80s", f"{b - a}s", "80s"]
        if condition == "far-field":
            effects += ["gain", f"-{plan.attenuation[i]}"]
        if condition == "fast":
            effects += ["tempo", "-s", "2.0"]
        sox(piece.path, "-r", str(rate), "-c", "1", "-b", "16", clip, *effects)
        n = frames_of(clip)
        scale = n / (b - a)
        start, end = (round(piece.speech[0] * rate) - a) * scale, (round(piece.speech[1] * rate) - a) * scale
        heads.append(start)
        tails.append(n - end)
        lengths.append(n)
        spans.append((start, end))
        clips.append(clip)
    position = round(LEAD_SECONDS * rate)
    padded = []
    for i, clip in enumerate(clips):
        before = position if i == 0 else 0
        after = (
            round(TAIL_SECONDS * rate)
            if i == len(clips) - 1
            else max(0, round(plan.pauses[i] * rate - tails[i] - heads[i + 1]))
        )
        out = work / f"padded{i:02d}.wav"
        sox(clip, out, "pad", f"{before}s", f"{after}s")
        start = position
        placed.append(
            {
                "id": plan.pieces[i].id,
                "text": plan.pieces[i].text,
                "labels": plan.pieces[i].labels,
                "clip": [round(start / rate, 4), round((start + lengths[i]) / rate, 4)],
                "speech": [round((start + spans[i][0]) / rate, 4), round((start + spans[i][1]) / rate, 4)],
            }
        )
        position = start + lengths[i] + after
        padded.append(out)
    final = work / f"{condition}.wav"
    joined = work / "joined.wav"
    sox(*padded, joined)
    if condition == "far-field":
        wet = work / "wet.wav"
        sox(joined, wet, "reverb", "50", "50", "100")
        noise = work / "noise.wav"
        sox("-n", "-r", str(rate), "-c", "1", "-b", "16", noise, "synth", f"{position}s", "brownnoise", "synth",
            "pinknoise", "mix")  # fmt: skip
        level = float(np.sqrt(np.mean((read_samples(noise).astype(np.float64) / 32768.0) ** 2)))
        volume = 10 ** (NOISE_DBFS / 20) / level
        sox("-m", "-v", "1", wet, "-v", f"{volume:.6f}", noise, final)
    elif condition == "telephone":
        sox("-G", joined, "-r", "8000", final, "sinc", "300-3400")
    else:
        joined.rename(final)
    for f in work.glob("*.wav"):
        if f != final:
            f.unlink()
    return {"condition": condition, "duration": round(position / rate, 4), "utterances": placed}


def dev_files(speech: Path, pieces: Sequence[Piece]) -> list[BenchFile]:
    """The dev group: each utterance file for WER/latency, the labelled files for the VAD scores."""
    files = [
        BenchFile(
            p.id,
            p.path,
            frames_of(p.path) / SAMPLE_RATE,
            utterances=(Utterance(p.id, p.text, "en"),),
            speech_ends=(p.speech[1],),
        )
        for p in pieces
    ]
    for entry in read_manifest(speech / "manifest.jsonl").entries:
        if entry.speech is not None:
            duration = soundfile.info(str(entry.path)).duration
            files.append(BenchFile(entry.name, entry.path, duration, speech=entry.speech, recognize=False))
    return files

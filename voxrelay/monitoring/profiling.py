"""``voxrelay profile``: a reference profile of a model deployment from known-good audio.

- a **manifest** (JSON lines, as ``voxrelay eval`` reads) or a **folder** of WAV files: every file goes
  through the edge's VAD and segmenter to an in-process recognizer running the model, and the monitor
  gathers each segment's features exactly as a serving recognizer measures them;
- a **batch output** folder (``voxrelay batch --format json``, with its ``summary.json``): the results'
  own confidence signals, and the audio features of each segment read back from the input files.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from voxrelay.errors import InvalidArgument
from voxrelay.monitoring.features import RepeatTracker, SegmentObservation, extract
from voxrelay.monitoring.profile import ModelRef, ReferenceProfile, build_profile
from voxrelay.monitoring.thresholds import DriftSettings

log = logging.getLogger(__name__)


def input_kind(path: Path) -> str:
    if path.is_file():
        return "manifest"
    if path.is_dir() and (path / "summary.json").is_file():
        return "batch"
    if path.is_dir():
        return "folder"
    raise InvalidArgument(f"{path}: no such manifest, folder or batch output")


def audio_files(path: Path, kind: str) -> list[Path]:
    if kind == "folder":
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
        if not files:
            raise InvalidArgument(f"{path}: no .wav files in this folder")
        return files
    from voxrelay.quality.manifest import read_manifest

    return [entry.path for entry in read_manifest(path).entries]


async def profile_files(
    files: list[Path], model: str, backend: str, vad: Any, drift: DriftSettings, kind: str, origin: str
) -> ReferenceProfile:
    """Run ``files`` through the pipeline against an in-process recognizer whose monitor only collects."""
    from prometheus_client import CollectorRegistry

    from voxrelay.cloud.server import create_server, load_engines
    from voxrelay.cloud.settings import ServerSettings
    from voxrelay.cloud.watch import model_ref
    from voxrelay.edge.agent import run_session
    from voxrelay.edge.capture.files import WavSource
    from voxrelay.edge.link.uplink import UplinkSettings, open_uplink
    from voxrelay.edge.transcribe import new_session_id
    from voxrelay.errors import AudioError
    from voxrelay.monitoring.monitor import Monitor

    settings = ServerSettings(host="127.0.0.1", port=0, models=(model,), backend=backend)
    engines = await asyncio.to_thread(load_engines, settings)
    name = next(iter(engines))
    monitor = Monitor({name: model_ref(engines[name].model)}, drift, CollectorRegistry(), collect=True)
    server, port = await create_server(settings, engines, monitor=monitor)
    try:
        async with open_uplink(UplinkSettings(server=f"127.0.0.1:{port}", device_id="profile")) as uplink:
            for path in files:
                try:
                    blocks = WavSource(str(path)).blocks()
                    async for _ in run_session(uplink, new_session_id(path.name), blocks, vad, window=1):
                        pass
                except AudioError as err:
                    print(f"voxrelay profile: {path}: {err.message} (left out)", flush=True)
    finally:
        await server.stop(grace=5.0)  # closes the monitor once it has measured every segment
    profile = monitor.collected_profile(name, kind, origin)
    if profile.segments < 20:
        raise InvalidArgument(
            f"{origin}: only {profile.segments} speech segments; a reference needs at least 20 (give more audio)"
        )
    return profile


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InvalidArgument(f"{path}: not a readable JSON file ({err})") from err


def profile_batch(folder: Path, origin: str) -> ReferenceProfile:
    """A profile from a batch output folder: results' signals + audio features from the inputs."""
    import soundfile

    summary = _read_json(folder / "summary.json")
    files = summary.get("files") if isinstance(summary, dict) else None
    if not isinstance(files, list):
        raise InvalidArgument(f"{folder / 'summary.json'}: files: missing (is this a voxrelay batch output?)")
    values: dict[str, list[float | str]] = {}
    repeats = RepeatTracker()
    model: ModelRef | None = None
    n = 0
    for item in files:
        if not isinstance(item, dict) or item.get("status") not in ("ok", "skipped") or not item.get("output"):
            continue
        output = Path(str(item["output"]))
        output = output if output.is_absolute() else folder / output
        if output.suffix != ".json" or not output.is_file():
            continue
        document = _read_json(output)
        source = Path(str(item.get("input", document.get("file", ""))))
        audio = None
        if source.is_file():
            audio, rate = soundfile.read(str(source), dtype="float32", always_2d=True)
            audio = audio.mean(axis=1) if rate == 16000 else None
        for seg in document.get("segments", []):
            if model is None and seg.get("model"):
                model = ModelRef(str(seg["model"]), str(seg.get("model_version", "")), str(seg.get("backend", "")))
            start, end = float(seg.get("start", 0.0)), float(seg.get("end", 0.0))
            clip = audio[int(start * 16000) : int(end * 16000)] if audio is not None else None
            obs = SegmentObservation(
                audio=np.ascontiguousarray(clip, dtype=np.float32) if clip is not None and clip.size else None,
                audio_seconds=float(seg.get("audio_seconds", end - start)),
                text=str(seg.get("text", "")),
                avg_logprob=float(seg.get("avg_logprob", 0.0)),
                no_speech_prob=float(seg.get("no_speech_prob", 0.0)),
                compression_ratio=float(seg.get("compression_ratio", 0.0)),
                language=str(seg.get("language", "")),
                session=str(source),
                start=start,
                end=end,
            )
            for key, value in extract(obs, repeats).items():
                values.setdefault(key, []).append(value)
            n += 1
    if model is None or n < 20:
        raise InvalidArgument(
            f"{folder}: {n} segments in its JSON outputs; a reference needs at least 20 "
            "(run voxrelay batch with --format json on more audio)"
        )
    return build_profile(values, model, "batch", origin, n)

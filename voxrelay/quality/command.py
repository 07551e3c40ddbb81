"""``voxrelay eval``: run a labelled manifest through the recognizer alone and end to end, and report."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import grpc

from voxrelay.edge.link.uplink import UplinkError, UplinkSettings, describe_rpc_error, open_uplink
from voxrelay.edge.transcribe import atomic_text
from voxrelay.errors import InvalidArgument, MissingDependency
from voxrelay.protos import pb, pb_grpc
from voxrelay.quality.evaluate import build_report
from voxrelay.quality.manifest import Manifest, read_manifest
from voxrelay.quality.runner import EvalSettings, FileRun, run_file

REPORT_NAME = "report.json"


async def _model_info(stub: pb_grpc.RecognizerStub, settings: UplinkSettings) -> pb.ModelInfo:
    try:
        info = await stub.GetInfo(pb.GetInfoRequest(), timeout=settings.connect_timeout)
    except grpc.aio.AioRpcError as err:
        raise UplinkError(describe_rpc_error(settings.server, err)) from None
    if settings.model:
        for model in info.models:
            if settings.model in (model.name, model.version):
                return model
    return info.models[0]


def _context(manifest: Path, settings: EvalSettings, uplink: UplinkSettings, model: pb.ModelInfo) -> dict[str, Any]:
    vad = settings.vad
    return {
        "manifest": str(manifest),
        "server": uplink.server,
        "model": {
            "name": model.name,
            "version": model.version,
            "backend": model.backend,
            "multilingual": model.multilingual,
            "compute": model.compute,
        },
        "options": {"language": uplink.language, "beam_size": uplink.beam_size or None},
        "vad_settings": {
            "vad": vad.vad,
            "mode": vad.mode,
            "threshold": vad.threshold,
            "segmenter": dataclasses.asdict(vad.segmenter) if vad.segmenter else "defaults",
        },
        "pace": settings.pace,
        "frame_s": 0.01,
    }


async def evaluate(
    manifest: Manifest,
    uplink_settings: UplinkSettings,
    settings: EvalSettings,
    *,
    output: str,
    plots: str | None = None,
    calibration_out: str | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    quiet: bool = False,
) -> int:
    """Evaluate every scorable row of the manifest; 0 when every file ran, 1 when some could not."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    uplink_settings = dataclasses.replace(uplink_settings, word_timestamps=True)
    runs: list[FileRun] = []
    try:
        async with open_uplink(uplink_settings) as uplink:
            stub = uplink.stub
            model = await _model_info(stub, uplink_settings)
            total = len(manifest.entries)
            for i, entry in enumerate(manifest.entries, 1):
                if not quiet:
                    print(f"[{i}/{total}] {entry.name}", file=stderr, flush=True)
                run = await run_file(entry, uplink, stub, settings)
                if run.error:
                    named = entry.name in run.error or str(entry.path) in run.error
                    print(
                        f"voxrelay eval: {run.error if named else f'{entry.name}: {run.error}'}",
                        file=stderr,
                        flush=True,
                    )
                runs.append(run)
    except UplinkError as err:
        print(f"voxrelay eval: {err.message}", file=stderr)
        return 1
    report = build_report(
        runs,
        multilingual=model.multilingual,
        collar=settings.collar,
        context=_context(manifest.path, settings, uplink_settings, model),
        model=model.name,
    )
    report["skipped"] = list(manifest.skipped)
    report["latency"]["measured"] = (
        "from the end of speech (when the audio of a segment's last speech frame reached the edge) to its "
        "result at the edge, the segmenter's endpoint wait included (stage endpoint); "
        + (
            "files read as fast as possible and segments sent one at a time, so the edge queue (a wait "
            "for the file's earlier segments that live audio does not have) is left out"
            if settings.pace is None
            else f"files read at {settings.pace:g} x real time, segments sent as they close"
        )
    )
    with atomic_text(Path(output)) as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
        f.write("\n")
    from voxrelay.quality.table import print_report

    print_report(report, stdout)
    if calibration_out:
        calibration = report["confidence"].get("calibration")
        if calibration is None:
            print(f"voxrelay eval: --calibration-out: {report['confidence'].get('note')}", file=stderr)
            return 1
        with atomic_text(Path(calibration_out)) as f:
            json.dump(calibration, f, indent=2)
            f.write("\n")
        if not quiet:
            print(f"WER calibration for {model.name} written to {calibration_out}", file=stderr)
    if plots:
        from voxrelay.quality.plots import write_plots

        written = write_plots(report, plots)
        if not quiet:
            print(f"{len(written)} charts in {plots}", file=stderr)
    return 1 if any(r.error for r in runs) else 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``voxrelay eval`` (the parser itself lives in voxrelay.cli)."""
    from voxrelay.edge.agent import DEFAULT_VAD, VADS

    p.add_argument("manifest", metavar="MANIFEST.jsonl", help="labelled files (the ../shared/data/speech format)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "-o", "--output-dir", metavar="DIR", help="write the JSON report to DIR/report.json (DIR is created)"
    )
    where.add_argument("--report", metavar="REPORT.json", help="write the JSON report to this file instead")
    p.add_argument("--plots", metavar="DIR", help="also write PNG charts into DIR")
    p.add_argument(
        "--calibration-out",
        metavar="FILE",
        help="also write the WER calibration fitted on this run (JSON, for voxrelay serve --calibration)",
    )
    p.add_argument("--server", metavar="HOST:PORT", help="recognizer to use (default: an embedded one)")
    p.add_argument("--vad", choices=VADS, default=DEFAULT_VAD, help="voice activity detector (default %(default)s)")
    p.add_argument("--vad-mode", type=int, choices=(0, 1, 2, 3), help="webrtc aggressiveness (0-3)")
    p.add_argument("--vad-threshold", type=float, help="silero speech probability threshold (0-1)")
    p.add_argument("--endpoint-seconds", type=float, help="pause that ends a segment (default: the segmenter's)")
    p.add_argument("--model", help="model name (default: the server's default; embedded: tiny.en)")
    p.add_argument("--language", help="language code passed to the recognizer (default: detect)")
    p.add_argument("--beam-size", type=int, default=0, help="beam width (default: the server's)")
    p.add_argument("--pace", type=float, help="read files at X times real time (1.0 = live, for live latency figures)")
    p.add_argument(
        "--collar",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="leave frames this close to a labelled boundary out of the VAD scores (default 0)",
    )


def check_dependencies(plots: bool) -> None:
    """Fail now, before any file runs, if scoring (or ``--plots``) could not work at the end."""
    needed = [("jiwer", "jiwer"), ("whisper_normalizer", "whisper-normalizer")]
    if plots:
        needed.append(("matplotlib", "matplotlib"))
    for module, package in needed:
        try:
            importlib.import_module(module)
        except ImportError as err:
            what = "--plots" if module == "matplotlib" else "WER scoring"
            raise MissingDependency(f"voxrelay eval ({what})", package, "eval") from err


def prepare(args: argparse.Namespace) -> tuple[Manifest, EvalSettings]:
    """Check the options and the dependencies and read the manifest (all before any model loads)."""
    from voxrelay.edge.agent import VadSettings

    if args.output_dir is not None:
        folder = Path(args.output_dir)
        if folder.suffix == ".json" and not folder.is_dir():
            raise InvalidArgument(
                f"-o/--output-dir: {args.output_dir!r} looks like a file; -o names the folder of report.json "
                f"(as in transcribe and batch); for a file give --report {args.output_dir}"
            )
        if folder.exists() and not folder.is_dir():
            raise InvalidArgument(f"-o/--output-dir: {args.output_dir!r} is a file, not a folder")
        args.report = str(folder / REPORT_NAME)
    if Path(args.report).is_dir():
        raise InvalidArgument(f"--report: {args.report!r} is a folder; give the path of the JSON report to write")
    if args.calibration_out and Path(args.calibration_out).is_dir():
        raise InvalidArgument(f"--calibration-out: {args.calibration_out!r} is a folder; give the path of a JSON file")
    check_dependencies(bool(args.plots))
    settings = EvalSettings(
        vad=VadSettings(
            vad=args.vad, mode=args.vad_mode, threshold=args.vad_threshold, endpoint_seconds=args.endpoint_seconds
        ),
        pace=args.pace,
        collar=args.collar,
    )
    return read_manifest(args.manifest), settings


async def run_prepared(
    prepared: tuple[Manifest, EvalSettings], args: argparse.Namespace, server: str, embedded: bool
) -> int:
    manifest, settings = prepared
    uplink = UplinkSettings(
        server=server,
        device_id="voxrelay-eval",
        language=args.language,
        model=None if embedded else args.model,
        beam_size=args.beam_size,
        word_timestamps=True,
        task=args.task,
    )
    return await evaluate(
        manifest,
        uplink,
        settings,
        output=args.report,
        plots=args.plots,
        calibration_out=args.calibration_out,
        quiet=args.quiet,
    )

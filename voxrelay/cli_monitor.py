"""The monitoring subcommands: ``voxrelay profile`` and ``voxrelay alerts`` (argument parsing and wiring)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def _add_profile(sub: argparse._SubParsersAction) -> None:
    from voxrelay.edge.agent import DEFAULT_VAD, VADS

    p = sub.add_parser(
        "profile",
        help="make a reference profile of a model deployment from known-good audio",
        description="Make the reference profile that `voxrelay serve --profile` compares traffic with: from "
        "a manifest (JSON lines), a folder of WAV files (run through the edge's VAD and segmenter to the "
        "model), or a `voxrelay batch --format json` output folder.",
    )
    p.add_argument("source", metavar="SOURCE", help="manifest.jsonl, a folder of WAV files, or a batch output folder")
    p.add_argument("-o", "--output", metavar="JSON", required=True, help="where the profile goes")
    p.add_argument("--model", default="tiny.en", help="the model the deployment serves (default %(default)s)")
    p.add_argument("--backend", default="faster-whisper", help="its backend (default %(default)s)")
    p.add_argument("--vad", choices=VADS, default=DEFAULT_VAD, help="the edge VAD in use (default auto)")
    p.add_argument("--vad-threshold", type=float, help="silero threshold, as the edges run it")
    p.add_argument("--vad-mode", type=int, choices=(0, 1, 2, 3), help="webrtc mode, as the edges run it")
    p.add_argument("--thresholds", metavar="YAML", help="thresholds file (its drift settings)")
    p.set_defaults(run=_run_profile)


def _run_profile(args: argparse.Namespace) -> int:
    from voxrelay.edge.agent import VadSettings
    from voxrelay.monitoring.profiling import audio_files, input_kind, profile_batch, profile_files
    from voxrelay.monitoring.thresholds import load_thresholds

    source = Path(args.source)
    kind = input_kind(source)
    drift = load_thresholds(args.thresholds).drift
    if kind == "batch":
        profile = profile_batch(source, str(source))
    else:
        vad = VadSettings(
            vad=args.vad,
            mode=args.vad_mode,
            threshold=args.vad_threshold,
            endpoint_seconds=getattr(args, "endpoint_seconds", None),
        )
        files = audio_files(source, kind)
        profile = asyncio.run(profile_files(files, args.model, args.backend, vad, drift, kind, str(source)))
    path = profile.save(args.output)
    print(
        f"{path}: reference of {profile.model.name} (version {profile.model.version}) from {profile.segments} "
        f"segments of {source} ({kind}); {len(profile.features)} features"
    )
    return 0


def _add_alerts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alerts",
        help="Prometheus alert rules from the thresholds file",
        description="Write Prometheus alert rules made from the thresholds file, or print the shipped thresholds.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    render = actions.add_parser("render", help="write the alert rules file", description="Write the alert rules.")
    render.add_argument("--thresholds", metavar="YAML", help="thresholds file (default: the shipped one)")
    render.add_argument("-o", "--output", metavar="FILE", help="rules file to write (default: stdout)")
    render.set_defaults(run=_run_render)
    defaults = actions.add_parser(
        "defaults", help="print the shipped thresholds file (to copy and edit)", description="Print the defaults."
    )
    defaults.set_defaults(run=_run_defaults)


def _run_render(args: argparse.Namespace) -> int:
    from voxrelay.monitoring.alerts import render, write_rules
    from voxrelay.monitoring.thresholds import load_thresholds

    thresholds = load_thresholds(args.thresholds)
    if args.output:
        path = write_rules(thresholds, args.output)
        print(f"{path}: {len(thresholds.alerts)} alert rules", file=sys.stderr)
    else:
        sys.stdout.write(render(thresholds))
    return 0


def _run_defaults(args: argparse.Namespace) -> int:
    from voxrelay.monitoring.thresholds import default_thresholds_text

    sys.stdout.write(default_thresholds_text())
    return 0


def add_monitor_commands(sub: argparse._SubParsersAction) -> None:
    _add_profile(sub)
    _add_alerts(sub)

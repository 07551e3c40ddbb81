"""The monitoring subcommands: ``voxrelay profile`` and ``voxrelay alerts`` (argument parsing and wiring), and
the edge commands' drift options (``--thresholds``, ``--drift-profile``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any


def _add_profile(sub: argparse._SubParsersAction) -> None:
    from voxrelay.edge.agent import DEFAULT_VAD, VADS

    p = sub.add_parser(
        "profile",
        help="make a reference profile of a model deployment from known-good audio",
        description="Make the reference profile that `voxrelay serve --profile` compares traffic with: from "
        "a manifest (JSON lines), a folder of WAV files (run through the edge's VAD and segmenter to the "
        "model), or a `voxrelay batch --format json` output folder. With --edge: the profile of an edge's own "
        "input that `voxrelay transcribe/listen --drift-profile` compares with (a manifest or a folder, "
        "through the edge's VAD and segmenter only; no model).",
    )
    p.add_argument("source", metavar="SOURCE", help="manifest.jsonl, a folder of WAV files, or a batch output folder")
    p.add_argument("-o", "--output", metavar="JSON", required=True, help="where the profile goes")
    p.add_argument("--model", default="tiny.en", help="the model the deployment serves (default %(default)s)")
    p.add_argument("--backend", default="faster-whisper", help="its backend (default %(default)s)")
    p.add_argument("--vad", choices=VADS, default=DEFAULT_VAD, help="the edge VAD in use (default auto)")
    p.add_argument("--vad-threshold", type=float, help="silero threshold, as the edges run it")
    p.add_argument("--vad-mode", type=int, choices=(0, 1, 2, 3), help="webrtc mode, as the edges run it")
    p.add_argument("--thresholds", metavar="YAML", help="thresholds file (its drift settings)")
    p.add_argument(
        "--edge", action="store_true", help="an edge input profile, for the VAD given (--model does not apply)"
    )
    p.set_defaults(run=_run_profile)


def _run_profile(args: argparse.Namespace) -> int:
    from voxrelay.monitoring.profiling import audio_files, input_kind, profile_batch, profile_files
    from voxrelay.monitoring.thresholds import load_thresholds

    source = Path(args.source)
    kind = input_kind(source)
    if args.edge:
        return _run_edge_profile(args, source, kind)
    drift = load_thresholds(args.thresholds).drift
    if kind == "batch":
        profile = profile_batch(source, str(source))
    else:
        vad = vad_settings(args)
        files = audio_files(source, kind)
        profile = asyncio.run(profile_files(files, args.model, args.backend, vad, drift, kind, str(source)))
    path = profile.save(args.output)
    print(
        f"{path}: reference of {profile.model.name} (version {profile.model.version}) from {profile.segments} "
        f"segments of {source} ({kind}); {len(profile.features)} features"
    )
    return 0


def vad_settings(args: argparse.Namespace) -> Any:
    """The edge VAD the options ask for (``--vad``, ``--vad-mode``, ``--vad-threshold``, ``--endpoint-seconds``)."""
    from voxrelay.edge.agent import VadSettings

    return VadSettings(
        vad=args.vad,
        mode=args.vad_mode,
        threshold=args.vad_threshold,
        endpoint_seconds=getattr(args, "endpoint_seconds", None),
    )


def _run_edge_profile(args: argparse.Namespace, source: Path, kind: str) -> int:
    from voxrelay.edge.drift import profile_edge_files
    from voxrelay.errors import InvalidArgument
    from voxrelay.monitoring.profiling import audio_files
    from voxrelay.monitoring.thresholds import load_thresholds

    if kind == "batch":
        raise InvalidArgument(
            f"{source}: --edge profiles audio (a manifest or a folder of WAV files), not a batch output"
        )
    settings = load_thresholds(args.thresholds).edge_drift
    vad = vad_settings(args)
    profile = profile_edge_files(audio_files(source, kind), vad, settings, kind, str(source))
    path = profile.save(args.output)
    print(
        f"{path}: edge input reference for the {vad.vad} VAD from {profile.segments} segments of {source} ({kind}); "
        f"{len(profile.features)} features"
    )
    return 0


def add_edge_drift_options(p: argparse.ArgumentParser) -> None:
    """``--thresholds``, ``--drift-profile`` and ``--edge-drift`` of the edge commands."""
    p.add_argument(
        "--drift-profile",
        metavar="JSON",
        help="the edge input reference (`voxrelay profile --edge`); without it the edge learns its reference "
        "from the first segments (edge_drift.learn_segments) and says so",
    )
    p.add_argument("--thresholds", metavar="YAML", help="thresholds file (its edge_drift settings)")
    p.add_argument(
        "--edge-drift",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="detect drift of this edge's own input (default: on with --drift-profile, --thresholds, "
        "--metrics-port or --metrics-file); alarms are said on stderr and exported as voxrelay_edge_drift_*",
    )


def edge_drift(args: argparse.Namespace, metrics: Any) -> Any:
    """The edge's drift detector the options ask for (None when off)."""
    vad = vad_settings(args).vad
    wanted = args.edge_drift
    if wanted is None:
        wanted = bool(args.drift_profile or args.thresholds or args.metrics_port is not None or args.metrics_file)
    if not wanted:
        return None
    from voxrelay.edge.drift import EdgeDrift, load_edge_profile
    from voxrelay.monitoring.thresholds import load_thresholds

    settings = load_thresholds(args.thresholds).edge_drift
    profile = load_edge_profile(args.drift_profile, vad) if args.drift_profile else None

    def say(line: str) -> None:
        if not args.quiet:
            print(f"voxrelay {args.command}: {line}", file=sys.stderr, flush=True)

    return EdgeDrift(vad, settings, profile, metrics, say)


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

"""The ``voxrelay`` command line: argument parsing only; each subcommand lives with its side."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from voxrelay import __version__
from voxrelay.cli_deploy import add_deploy_command, add_serve_rollout_arguments
from voxrelay.cli_edge import add_edge_commands
from voxrelay.cli_monitor import add_monitor_commands
from voxrelay.cli_recognizer import temperatures
from voxrelay.errors import InvalidArgument, UnknownModel, VoxrelayError
from voxrelay.review.cli import add_review_command

USAGE_ERROR = 2
STARTUP_LOGGER = "voxrelay.startup"  # voxrelay.cloud.server's; not imported here, the edge has no cloud side


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from voxrelay.cloud.settings import BACKENDS, ServerSettings

    d = ServerSettings()
    p = sub.add_parser("serve", help="run the recognizer service (gRPC)", description="Run the recognizer service.")
    p.add_argument("--host", default=d.host, help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=d.port, help="port (default %(default)s; 0 picks a free one)")
    p.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="model to serve: tiny.en (default), base, a CTranslate2 directory; repeat to serve several "
        "(the first is the default)",
    )
    p.add_argument("--backend", choices=BACKENDS, default=d.backend, help="(default %(default)s)")
    p.add_argument("--beam-size", type=int, default=d.beam_size, help="default beam width (default %(default)s)")
    p.add_argument(
        "--temperature",
        type=temperatures,
        default=d.temperature,
        metavar="T[,T...]",
        help="Whisper's sampling temperatures, tried in order while a decode looks unreliable (default "
        "0,0.2,0.4,0.6,0.8,1; 0 = beam search only, reproducible)",
    )
    p.add_argument(
        "--no-tail-guard",
        dest="tail_guard",
        action="store_false",
        help="return the phrases Whisper times past a segment's audio, repeats, or hears no speech in at its "
        "end (by default they are dropped)",
    )
    p.add_argument(
        "--no-speculate",
        dest="speculate",
        action="store_false",
        help="ignore the pauses an edge reports in its open segment (by default the segment so far is "
        "recognised during the pause, below every final result, and used if the segment then ends)",
    )
    p.add_argument(
        "--context-seconds",
        type=float,
        default=d.context_seconds,
        metavar="S",
        help="decode a segment that starts within S s of the previous one's end with the previous text as "
        "Whisper's prompt (default %(default)s: off)",
    )
    p.add_argument(
        "--compute-type",
        default=d.compute_type,
        help="CTranslate2 compute type: int8 (default), float32, int8_float32...",
    )
    p.add_argument("--device", default=d.device, help="cpu (default) or cuda")
    p.add_argument(
        "--workers",
        type=int,
        default=d.inference_workers,
        dest="inference_workers",
        help="inference workers: model calls running at once (default: one per core, up to 4)",
    )
    p.add_argument(
        "--cpu-threads",
        "--threads",
        type=int,
        default=d.cpu_threads,
        help="CPU threads per worker (default: the cores divided among the workers)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=d.max_batch,
        help="segments of any streams decoded together in one call (default %(default)s; 1 turns batching off)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=d.max_wait_ms,
        help="how long a worker waits for a batch to fill while more segments are coming (default %(default)g ms)",
    )
    p.add_argument("--max-segment-seconds", type=float, default=d.max_segment_seconds)
    p.add_argument("--max-streams", type=int, default=d.max_concurrent_streams, dest="max_concurrent_streams")
    p.add_argument(
        "--grace",
        type=float,
        default=d.grace_seconds,
        dest="grace_seconds",
        help="seconds to finish in-flight segments on shutdown (default %(default)s)",
    )
    p.add_argument("--reflection", action="store_true", help="enable gRPC server reflection (for grpcurl)")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (0 picks a free port)",
    )
    _add_serve_guards(p, d)
    _add_serve_fronts(p, d)
    _add_serve_monitoring(p)
    add_serve_rollout_arguments(p)
    p.set_defaults(run=_run_serve)


def _add_serve_fronts(p: argparse.ArgumentParser, d: Any) -> None:
    """The OpenAI-compatible HTTP API and the Wyoming server of ``serve``."""
    p.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help="also serve the OpenAI-compatible HTTP API (POST /v1/audio/transcriptions) on this port",
    )
    p.add_argument(
        "--http-max-upload-mb",
        type=float,
        default=d.http_max_upload_bytes / (1 << 20),
        metavar="MB",
        help="largest audio upload the HTTP API accepts (default %(default)g)",
    )
    p.add_argument(
        "--wyoming-port",
        type=int,
        metavar="PORT",
        help="also serve the Wyoming protocol (Home Assistant speech-to-text) on this port (usually 10300)",
    )
    p.add_argument(
        "--wyoming-trusted",
        action="store_true",
        help="with --auth-token-file, accept Wyoming clients anyway (Wyoming carries no token)",
    )


def _add_serve_monitoring(p: argparse.ArgumentParser) -> None:
    """Drift monitors, thresholds and the built-in live page of ``serve``."""
    p.add_argument(
        "--dashboard-port",
        type=int,
        metavar="PORT",
        help="serve the built-in live page on http://HOST:PORT/ (0 picks a free port)",
    )
    p.add_argument(
        "--thresholds",
        metavar="YAML",
        dest="thresholds_file",
        help="drift and alert thresholds (default: the shipped file; see `voxrelay alerts defaults`)",
    )
    p.add_argument(
        "--profile",
        action="append",
        dest="profiles",
        metavar="JSON",
        help="reference profile of a model served (from `voxrelay profile`); repeat for several models. "
        "A model without one learns its reference from its first segments",
    )
    p.add_argument(
        "--calibration",
        metavar="JSON",
        dest="calibration_file",
        help="WER calibration for voxrelay_asr_estimated_wer (JSON; default: the shipped one for tiny.en)",
    )
    p.add_argument(
        "--no-monitoring", action="store_false", dest="monitoring", help="no drift monitors (and no live page)"
    )


def _add_serve_guards(p: argparse.ArgumentParser, d: Any) -> None:
    """Admission limits, TLS and device tokens of ``serve``."""
    p.add_argument(
        "--max-queued-audio",
        type=float,
        default=d.max_queued_audio_seconds,
        dest="max_queued_audio_seconds",
        metavar="SECONDS",
        help="audio waiting for recognition beyond which new segments are refused with a retry hint "
        "(default %(default)s)",
    )
    p.add_argument(
        "--max-pending-segments",
        type=int,
        default=d.max_pending_segments,
        metavar="N",
        help="segments of one stream awaiting results (default %(default)s)",
    )
    p.add_argument(
        "--stream-idle",
        type=float,
        default=d.stream_idle_seconds,
        dest="stream_idle_seconds",
        metavar="SECONDS",
        help="close a stream that sent nothing for this long with nothing pending (default %(default)s)",
    )
    p.add_argument(
        "--max-client-streams",
        type=int,
        default=d.max_client_streams,
        metavar="N",
        help="streams one client (device token, else certificate, else device id) may hold (default %(default)s)",
    )
    p.add_argument(
        "--max-queued-work",
        type=float,
        default=d.max_queued_work_seconds,
        dest="max_queued_work_seconds",
        metavar="SECONDS",
        help="estimated inference seconds queued or running, all clients; past it only clients within their "
        "fair share are admitted (default %(default)s)",
    )
    p.add_argument(
        "--max-client-queued-work",
        type=float,
        default=d.max_client_queued_work_seconds,
        dest="max_client_queued_work_seconds",
        metavar="SECONDS",
        help="estimated inference seconds one client may have queued or running (default %(default)s)",
    )
    p.add_argument(
        "--min-audio-rate",
        type=float,
        default=d.min_audio_rate,
        metavar="X",
        help="refuse an open segment whose audio arrives slower than X times real time (default %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        metavar="N",
        help="TCP connections at once (default %(default)s, kept below the open-file limit)",
    )
    p.add_argument(
        "--connection-idle",
        type=float,
        default=d.connection_idle_seconds,
        dest="connection_idle_seconds",
        metavar="SECONDS",
        help="close a connection without calls after this long (default %(default)s)",
    )
    p.add_argument("--tls-cert", metavar="PEM", help="server certificate (chain) for TLS")
    p.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    p.add_argument("--tls-client-ca", metavar="PEM", help="require client certificates signed by this CA (mTLS)")
    p.add_argument(
        "--auth-token-file",
        metavar="PATH",
        help="accept only calls with one of these device tokens (one per line: TOKEN [NAME])",
    )
    p.add_argument(
        "--insecure", action="store_true", help="allow plaintext on a non-loopback --host (a trusted network)"
    )


def _run_serve(args: argparse.Namespace) -> int:
    from voxrelay.cloud.memory import restart_with_huge_pages
    from voxrelay.cloud.server import serve
    from voxrelay.cloud.settings import ServerSettings

    if getattr(args, "own_process", False):
        restart_with_huge_pages()  # once, before anything starts (see voxrelay.cloud.memory)
    if args.models and args.deployments_file:
        raise InvalidArgument("--model and --deployments: give one (a deployments file names its models)")
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        models=tuple(args.models or ("tiny.en",)),
        backend=args.backend,
        device=args.device,
        compute_type=args.compute_type,
        beam_size=args.beam_size,
        temperature=args.temperature,
        tail_guard=args.tail_guard,
        speculate=args.speculate,
        context_seconds=args.context_seconds,
        inference_workers=args.inference_workers,
        cpu_threads=args.cpu_threads,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_segment_seconds=args.max_segment_seconds,
        max_concurrent_streams=args.max_concurrent_streams,
        grace_seconds=args.grace_seconds,
        reflection=args.reflection,
        metrics_port=args.metrics_port,
        max_queued_audio_seconds=args.max_queued_audio_seconds,
        max_pending_segments=args.max_pending_segments,
        stream_idle_seconds=args.stream_idle_seconds,
        max_client_streams=args.max_client_streams,
        max_queued_work_seconds=args.max_queued_work_seconds,
        max_client_queued_work_seconds=args.max_client_queued_work_seconds,
        min_audio_rate=args.min_audio_rate,
        max_connections=args.max_connections,
        connection_idle_seconds=args.connection_idle_seconds,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        auth_token_file=args.auth_token_file,
        insecure=args.insecure,
        http_port=args.http_port,
        http_max_upload_bytes=int(args.http_max_upload_mb * (1 << 20)),
        wyoming_port=args.wyoming_port,
        wyoming_trusted=args.wyoming_trusted,
        monitoring=args.monitoring,
        thresholds_file=args.thresholds_file,
        profiles=tuple(args.profiles or ()),
        calibration_file=args.calibration_file,
        dashboard_port=args.dashboard_port,
        deployments_file=args.deployments_file,
        admin_token_file=args.admin_token_file,
        data_dir=args.data_dir,
        review_port=args.review_port,
    )
    return serve(settings)


class _Parser(argparse.ArgumentParser):
    """An argument parser that takes no abbreviations: ``--device cuda`` is never ``--device-id cuda``.
    Subcommand parsers are made of the same class, so the rule holds at every level."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="voxrelay",
        description="Edge/cloud speech transcription: VAD at the edge, Whisper in the cloud, gRPC between.",
    )
    parser.add_argument("--version", action="version", version=f"voxrelay {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    add_edge_commands(sub)
    add_monitor_commands(sub)
    add_deploy_command(sub)
    add_review_command(sub)
    _add_log_flags_everywhere(parser)
    return parser


def _add_log_flags_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept -v and -q after the subcommand too (``voxrelay batch DIR -o OUT -q``). Their default is
    SUPPRESS there, so a subcommand that does not see them leaves what was given before it."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in dict.fromkeys(action.choices.values()):
            taken = child._option_string_actions
            if "-v" not in taken and "--verbose" not in taken:
                child.add_argument(
                    "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (repeatable)"
                )
            if "-q" not in taken and "--quiet" not in taken:
                child.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only errors")
            _add_log_flags_everywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.own_process = argv is None  # run as the command itself (not called from other Python code)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return USAGE_ERROR
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.quiet:  # what a server runs is said at the default level too
        logging.getLogger(STARTUP_LOGGER).setLevel(min(level, logging.INFO))
    try:
        return int(args.run(args))
    except (InvalidArgument, UnknownModel) as err:
        print(f"voxrelay {args.command}: {err.message}", file=sys.stderr)
        return USAGE_ERROR
    except VoxrelayError as err:
        print(f"voxrelay {args.command}: {err.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`voxrelay transcribe long.wav | head -1`): end quietly, as Unix tools do. Point
        # stdout at /dev/null so that the interpreter's last flush does not report the closed pipe again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

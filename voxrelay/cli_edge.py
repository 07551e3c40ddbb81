"""The edge-side subcommands: transcribe, batch, listen, devices, eval (argument parsing and wiring)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from voxrelay.cli_monitor import add_edge_drift_options, edge_drift, vad_settings
from voxrelay.cli_recognizer import add_recognizer_options, check_decoding_options, embedded_options
from voxrelay.edge.vad.segmenter import HANGOVER_SECONDS
from voxrelay.errors import InvalidArgument


def _add_edge_options(p: argparse.ArgumentParser, *, with_pace: bool, with_spool: bool = True) -> None:
    from voxrelay.edge.agent import DEFAULT_VAD, VADS
    from voxrelay.edge.sinks import FORMATS

    p.add_argument(
        "--server",
        action="append",
        metavar="HOST:PORT",
        help="recognizer to use; without it an embedded recognizer runs in-process. Several replicas: "
        "repeat the flag or give A:PORT,B:PORT; dns:///NAME:PORT balances over every address of NAME "
        "(round_robin with health checks, e.g. a Kubernetes headless Service)",
    )
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default %(default)s)")
    p.add_argument(
        "--vad",
        choices=VADS,
        default=DEFAULT_VAD,
        help="voice activity detector; auto (default) = silero if installed, else webrtc",
    )
    p.add_argument("--vad-mode", type=int, choices=(0, 1, 2, 3), help="webrtc aggressiveness (0-3)")
    p.add_argument("--vad-threshold", type=float, help="silero speech probability threshold (0-1)")
    p.add_argument(
        "--endpoint-seconds",
        type=float,
        help=f"pause that ends a segment (default {HANGOVER_SECONDS:g}); longer keeps pausing talkers' "
        "sentences whole, shorter answers sooner",
    )
    p.add_argument("--model", help="model name (default: the server's default; embedded: tiny.en)")
    p.add_argument("--language", help="language code such as en or de (default: detect)")
    p.add_argument("--beam-size", type=int, default=0, help="beam width (default: the server's)")
    p.add_argument("--word-timestamps", action="store_true", help="ask for per-word timings (JSON output)")
    p.add_argument("--initial-prompt", help="context text for the model (spellings, style)")
    p.add_argument("--hotwords", help="words or phrases the model should favour")
    p.add_argument("--device-id", help="id of this device (default: the host name)")
    add_recognizer_options(p)
    if with_pace:
        p.add_argument("--pace", type=float, help="read files at X times real time (1.0 = live)")
    _add_link_options(p, with_spool=with_spool)


def _add_link_options(p: argparse.ArgumentParser, *, with_spool: bool) -> None:
    """How the edge reaches the recognizer (TLS, token) and keeps segments until answered (spool: not for
    ``batch``, which resumes by file)."""
    p.add_argument("--tls", action="store_true", help="use TLS with the system's CA certificates")
    p.add_argument("--tls-ca", metavar="PEM", help="use TLS, trusting this CA certificate")
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate for mutual TLS")
    p.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    p.add_argument("--auth-token-file", metavar="PATH", help="send the device token in this file")
    p.add_argument("--insecure", action="store_true", help="allow plaintext to a server that is not on this machine")
    if with_spool:
        p.add_argument(
            "--spool-dir",
            metavar="DIR",
            help="keep every segment on disk until its result is delivered; a rerun with the same DIR "
            "resends what an interrupted run left (default: in memory)",
        )
        p.add_argument(
            "--spool-max-mb", type=float, default=512.0, metavar="MB", help="spool size bound (default %(default)s)"
        )
    p.add_argument(
        "--retry-for",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="keep reconnecting this long without progress before giving up (default %(default)s)",
    )


def _link_settings(args: argparse.Namespace, embedded: bool) -> dict[str, Any]:
    spool: dict[str, Any] = {"max_outage_seconds": args.retry_for}
    if hasattr(args, "spool_dir"):  # batch has no spool
        spool.update(spool_dir=args.spool_dir, spool_max_bytes=int(args.spool_max_mb * 1024 * 1024))
    if embedded:  # the embedded recognizer is plaintext on loopback
        return spool
    return {
        **spool,
        "tls": args.tls,
        "tls_ca": args.tls_ca,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "auth_token_file": args.auth_token_file,
        "insecure": args.insecure,
    }


def _add_interim_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--interim",
        action=argparse.BooleanOptionalAction,
        default=None,
        help='interim results while a segment is spoken: with --format json as "final": false objects '
        "(only with --interim); on a terminal (text output of listen or of transcribe --pace) as a line "
        "rewritten until the final text replaces it (the default there; --no-interim turns it off); "
        "text in a file or pipe, srt and vtt hold final results only",
    )


def _add_metrics_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics while running (0 picks a free port)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address of the metrics endpoint (default %(default)s; 0.0.0.0 for a remote Prometheus)",
    )
    p.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write Prometheus metrics to PATH (text format, replaced atomically every 15 s and at exit; "
        "name it *.prom for node_exporter's textfile collector)",
    )


def _edge_metrics(args: argparse.Namespace) -> Any:
    """Context manager: the edge metrics the command's --metrics-port/--metrics-file ask for (or None)."""
    from voxrelay.edge.metrics import exported_edge_metrics
    from voxrelay.exposition import ExportSettings

    return exported_edge_metrics(
        ExportSettings(port=args.metrics_port, host=args.metrics_host, textfile=args.metrics_file)
    )


def _add_transcribe(sub: argparse._SubParsersAction) -> None:
    from voxrelay.edge.capture.decoders import formats_read

    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Transcribe audio files through VAD, segmenter and recognizer. Formats read: "
        f"{formats_read()}; any rate and channel count.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files (WAV, FLAC, Ogg, MP3, M4A, ...)")
    p.add_argument(
        "-o", "--output-dir", metavar="DIR", help="write DIR/<stem>.<suffix> per file (created) instead of stdout"
    )
    _add_edge_options(p, with_pace=True)
    _add_interim_option(p)
    _add_metrics_options(p)
    add_edge_drift_options(p)
    p.set_defaults(run=_run_transcribe)


def _add_batch(sub: argparse._SubParsersAction) -> None:
    from voxrelay.batch.run import DEFAULT_JOBS, MAX_JOBS
    from voxrelay.edge.capture.decoders import formats_read, readable_suffixes

    p = sub.add_parser(
        "batch",
        help="transcribe folders of audio files offline, resumably",
        description="Transcribe audio files, folders (searched recursively for "
        f"{' '.join(readable_suffixes())}) and globs into DIR, several files at once. Formats read: "
        f"{formats_read()}. Other files in the folders are left out and counted in the summary. A rerun "
        "skips files whose output is complete; Ctrl-C keeps what finished. DIR/summary.json lists every "
        "input with its status.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders or globs ('rec/**/*.mp3')")
    p.add_argument("-o", "--output-dir", metavar="DIR", required=True, help="where outputs go (created)")
    p.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        metavar="N",
        help=f"files in flight at once (1..{MAX_JOBS}; default %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true", help="redo inputs whose output already exists")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="spread the files over a Ray cluster (HOST:PORT, ray://HOST:PORT or auto; the `ray` extra), "
        "one recognizer per worker slot (or --server for all)",
    )
    p.add_argument("--ray-workers", type=int, metavar="N", help="worker slots on the cluster (default: one per CPU)")
    p.add_argument("--ray-cpus", type=float, default=1.0, metavar="N", help="CPUs per worker slot (default 1)")
    # batch resumes by file (a rerun skips complete outputs) and keeps segments in memory: no spool.
    _add_edge_options(p, with_pace=False, with_spool=False)
    _add_metrics_options(p)
    p.set_defaults(run=_run_batch)


def _add_listen(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("listen", help="transcribe the microphone live", description="Transcribe the microphone.")
    p.add_argument("--device", help="input device index or name (see `voxrelay devices`)")
    _add_edge_options(p, with_pace=False)
    _add_interim_option(p)
    _add_metrics_options(p)
    add_edge_drift_options(p)
    p.set_defaults(run=_run_listen)


def _add_devices(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list audio input devices", description="List audio input devices.")
    p.set_defaults(run=_run_devices)


def _edge_settings(args: argparse.Namespace, server: str, embedded: bool) -> tuple[Any, Any]:
    from voxrelay.edge.link.uplink import UplinkSettings
    from voxrelay.edge.transcribe import default_device_id

    uplink = UplinkSettings(
        server=server,
        device_id=args.device_id or default_device_id(),
        language=args.language,
        model=None if embedded else args.model,
        beam_size=args.beam_size,
        word_timestamps=args.word_timestamps,
        initial_prompt=args.initial_prompt,
        hotwords=args.hotwords,
        task=args.task,
        **_link_settings(args, embedded),
    )
    return uplink, vad_settings(args)


async def _with_server(
    args: argparse.Namespace,
    body: Callable[[str, bool], Awaitable[int]],
    inference_workers: int = 1,
    registry: Any = None,
) -> int:
    if args.server:
        from voxrelay.edge.transcribe import parse_server

        return await body(parse_server(args.server), False)
    from voxrelay.embedded import embedded_recognizer

    async with embedded_recognizer(
        **embedded_options(args),
        inference_workers=inference_workers,
        metrics_registry=registry,
    ) as address:
        return await body(address, True)


def _refuse_output_collisions(paths: list[str]) -> None:
    """Refuse inputs that would write the same DIR/<stem>.<suffix>, before any work is done."""
    seen: dict[str, str] = {}
    for path in paths:
        stem = Path(path).stem
        if stem in seen and seen[stem] != path:
            raise InvalidArgument(
                f"--output-dir: {seen[stem]} and {path} would both write {stem}.*; rename one or run them apart"
            )
        seen.setdefault(stem, path)


def _run_transcribe(args: argparse.Namespace) -> int:
    from voxrelay.edge.sinks import check_interim
    from voxrelay.edge.transcribe import transcribe

    check_decoding_options(args)
    check_interim(args.format, args.interim)
    if args.pace is not None and args.pace <= 0:
        raise InvalidArgument(f"--pace: {args.pace} must be positive (1.0 = real time)")
    if args.output_dir:
        _refuse_output_collisions(args.paths)
    elif args.format in ("srt", "vtt") and len(args.paths) > 1:
        # One subtitle document per file: several concatenated on stdout are not a valid document.
        raise InvalidArgument(f"--format {args.format}: several inputs need --output-dir DIR (one document per file)")

    with _edge_metrics(args) as metrics:
        drift = edge_drift(args, metrics)

        async def body(server: str, embedded: bool) -> int:
            uplink, vad = _edge_settings(args, server, embedded)
            return await transcribe(
                args.paths,
                uplink,
                fmt=args.format,
                vad=vad,
                pace=args.pace,
                output_dir=args.output_dir,
                metrics=metrics,
                interim=args.interim,
                drift=drift,
            )

        return asyncio.run(_with_server(args, body, registry=metrics and metrics.registry))


def _run_batch(args: argparse.Namespace) -> int:
    from voxrelay.batch.run import BatchSettings, embedded_workers, plan_batch, run_batch

    check_decoding_options(args)
    settings = BatchSettings(output_dir=args.output_dir, fmt=args.format, jobs=args.jobs, overwrite=args.overwrite)
    if args.ray:
        return _run_batch_ray(args, settings)
    plan = plan_batch(args.inputs, settings)
    with _edge_metrics(args) as metrics:
        if not plan.jobs:  # everything skipped or failed: no recognizer to start
            return asyncio.run(run_batch(plan, None, quiet=args.quiet, metrics=metrics))

        async def body(server: str, embedded: bool) -> int:
            uplink, vad = _edge_settings(args, server, embedded)
            return await run_batch(plan, uplink, vad, quiet=args.quiet, metrics=metrics)

        workers = embedded_workers(settings.jobs)
        return asyncio.run(_with_server(args, body, workers, registry=metrics and metrics.registry))


def _run_batch_ray(args: argparse.Namespace, settings: Any) -> int:
    import functools

    from voxrelay.batch.ray_batch import RaySettings, run_batch_ray
    from voxrelay.batch.run import plan_batch

    ray_settings = RaySettings(args.ray, args.ray_workers, args.ray_cpus)
    plan = plan_batch(args.inputs, settings)
    recognizer = None
    if args.server:
        from voxrelay.edge.transcribe import parse_server

        uplink, vad = _edge_settings(args, parse_server(args.server), False)
    else:
        from voxrelay.embedded import embedded_recognizer

        # Each worker slot starts its own recognizer; the address is filled in there.
        uplink, vad = _edge_settings(args, "127.0.0.1:1", True)
        recognizer = functools.partial(embedded_recognizer, **embedded_options(args))
    with _edge_metrics(args) as metrics:
        return asyncio.run(
            run_batch_ray(plan, ray_settings, uplink, vad, recognizer, quiet=args.quiet, metrics=metrics)
        )


def _run_listen(args: argparse.Namespace) -> int:
    from voxrelay.edge.sinks import check_interim
    from voxrelay.edge.transcribe import listen

    check_decoding_options(args)
    check_interim(args.format, args.interim)
    device: int | str | None = int(args.device) if args.device and args.device.isdigit() else args.device

    with _edge_metrics(args) as metrics:
        drift = edge_drift(args, metrics)

        async def body(server: str, embedded: bool) -> int:
            uplink, vad = _edge_settings(args, server, embedded)
            return await listen(
                uplink, device=device, fmt=args.format, vad=vad, metrics=metrics, interim=args.interim, drift=drift
            )

        return asyncio.run(_with_server(args, body, registry=metrics and metrics.registry))


def _run_devices(args: argparse.Namespace) -> int:
    from voxrelay.edge.capture.mic import list_input_devices

    devices = list_input_devices()
    if not devices:
        print(
            "voxrelay devices: no audio input device found: connect a microphone and check that the system sees "
            "it (`arecord -l` on Linux)",
            file=sys.stderr,
        )
        return 1
    for d in devices:
        default = " (default)" if d.is_default else ""
        print(
            f"{d.index:3d}  {d.name}  [{d.host_api}, {d.max_input_channels} ch, {d.default_samplerate:g} Hz]{default}"
        )
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from voxrelay.quality.command import add_arguments

    p = sub.add_parser(
        "eval",
        help="score VAD, recognizer and end-to-end quality on labelled files",
        description="Run a labelled manifest through the recognizer alone and through the whole pipeline; "
        "report VAD precision/recall, WER of both, which stage caused the errors, and latency.",
    )
    add_arguments(p)
    add_recognizer_options(p)
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from voxrelay.quality.command import prepare, run_prepared

    check_decoding_options(args)
    prepared = prepare(args)

    async def body(server: str, embedded: bool) -> int:
        return await run_prepared(prepared, args, server, embedded)

    return asyncio.run(_with_server(args, body))


def add_edge_commands(sub: argparse._SubParsersAction) -> None:
    _add_transcribe(sub)
    _add_batch(sub)
    _add_listen(sub)
    _add_devices(sub)
    _add_eval(sub)

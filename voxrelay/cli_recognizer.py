"""The recognizer's options of the edge commands: --task and the embedded recognizer's --backend,
--temperature, --compute-type and --threads (Whisper's names), and the usage errors they can make."""

from __future__ import annotations

import argparse
from typing import Any

from voxrelay.errors import InvalidArgument


def temperatures(text: str) -> tuple[float, ...]:
    """``--temperature``: one temperature or Whisper's comma-separated fallback list, each 0..1."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a temperature or a list such as 0,0.2,0.4") from None
    if not all(0.0 <= t <= 1.0 for t in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every temperature is between 0 and 1")
    return values


def add_recognizer_options(p: argparse.ArgumentParser) -> None:
    """What the recognizer does (--task) and how the embedded one runs (backend, compute type, threads,
    temperatures), with the names of Whisper's and faster-whisper's command lines."""
    p.add_argument(
        "--task",
        choices=("transcribe", "translate"),
        default="transcribe",
        help="transcribe (default), or translate the speech into English (needs a multilingual model, e.g. base)",
    )
    p.add_argument("--backend", default="faster-whisper", help="embedded recognizer backend (default %(default)s)")
    p.add_argument(
        "--temperature",
        type=temperatures,
        metavar="T[,T...]",
        help="embedded recognizer: Whisper's sampling temperatures, tried in order while a decode looks "
        "unreliable (default 0,0.2,0.4,0.6,0.8,1; 0 = beam search only, reproducible)",
    )
    p.add_argument(
        "--compute-type",
        metavar="TYPE",
        help="embedded recognizer: CTranslate2 compute type (default int8; float32, int8_float32...)",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="embedded recognizer: CPU threads per inference worker (default: the cores divided among the workers)",
    )


def embedded_options(args: argparse.Namespace) -> dict[str, Any]:
    """The embedded recognizer's model and how it runs, from the command line."""
    return {
        "model": args.model or "tiny.en",
        "backend": args.backend,
        "compute_type": args.compute_type or "int8",
        "cpu_threads": args.threads or 0,
        "temperature": args.temperature,
    }


def check_decoding_options(args: argparse.Namespace) -> None:
    """Usage errors in the decoding options, before any model loads or any file is read."""
    from voxrelay.languages import LANGUAGE_CODES, unknown_language

    if args.language is not None:
        args.language = args.language.strip().lower() or None
    if args.language is not None and args.language not in LANGUAGE_CODES:
        raise InvalidArgument(f"--language: {unknown_language(args.language)}")
    if args.threads is not None and args.threads < 1:
        raise InvalidArgument(f"--threads: {args.threads} must be at least 1")
    if args.server:
        given = [flag for flag, value in _EMBEDDED_ONLY if getattr(args, value) is not None]
        if given:
            raise InvalidArgument(
                f"{', '.join(given)}: set the embedded recognizer, and --server names another one; give them "
                "to that server's `voxrelay serve`, or leave --server out"
            )
        return
    _check_embedded_model(args)


_EMBEDDED_ONLY = (("--temperature", "temperature"), ("--compute-type", "compute_type"), ("--threads", "threads"))


def _check_embedded_model(args: argparse.Namespace) -> None:
    """Translation and languages other than English need a multilingual model: say so before it loads."""
    from voxrelay.models.catalogue import resolve_model

    wants = (
        "--task translate"
        if args.task == "translate"
        else (f"--language {args.language}" if args.language not in (None, "en") else None)
    )
    if wants is None:
        return
    model = resolve_model(args.model or "tiny.en")
    if not model.multilingual:
        raise InvalidArgument(f"{wants}: {model.name} is an English-only model; give a multilingual one (--model base)")

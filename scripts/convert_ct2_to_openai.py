#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper model into an openai-whisper checkpoint (lossless).

    python scripts/convert_ct2_to_openai.py                          # tiny.en into the cache
    python scripts/convert_ct2_to_openai.py --model base --output base.pt
    python scripts/convert_ct2_to_openai.py --model /path/to/ct2-dir --output model.pt

Without ``--output`` the checkpoint goes to the cache that the openai-whisper backend reads
(``$VOXRELAY_CACHE_DIR/openai-whisper/<name>-<version>.pt``). Load it with
``whisper.load_model(PATH)``.
"""

from __future__ import annotations

import argparse
import sys
import time

from voxrelay.errors import VoxrelayError
from voxrelay.models.catalogue import DEFAULT_MODEL, local_model, resolve_model
from voxrelay.models.convert import convert_ct2_to_openai, openai_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a catalogue name or a CTranslate2 model directory (default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--output", help="where to write the checkpoint (default: the cache)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        resolved = local_model(resolve_model(args.model))
        assert resolved.path is not None
        path = convert_ct2_to_openai(resolved.path, args.output) if args.output else openai_checkpoint(resolved)
    except (VoxrelayError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{resolved.name} ({resolved.source}) -> {path} in {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``voxrelay review``: work through a recognizer's review queue in a terminal.

    voxrelay review list                          what waits, oldest first
    voxrelay review play ID [--output seg.wav]    hear a segment (aplay, else the sounddevice package)
    voxrelay review accept ID                     the model's text is right
    voxrelay review correct ID "the right text"   it is not; this is
    voxrelay review skip ID                       later (it goes behind the others)
    voxrelay review export -o DIR                 reviewed segments as an eval manifest + WAVs

The export is a manifest ``voxrelay eval`` and ``voxrelay profile`` read: one JSON line per reviewed
segment with ``audio`` (``audio/<id>.wav``), ``text`` (what the reviewer accepted or typed),
``language``, ``text_kind: human_reference``, and where it came from.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from voxrelay import adminlink
from voxrelay.errors import InvalidArgument, VoxrelayError
from voxrelay.protos import admin_pb


def add_review_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "review",
        help="the human review queue: list, play, accept, correct, export",
        description="Work through a recognizer's review queue (its Admin service).",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=help, description=help)
        adminlink.add_arguments(v)
        v.set_defaults(run=_run)
        return v

    ls = verb("list", "the items waiting (or reviewed)")
    ls.add_argument("--status", default="pending", help="pending (default), accepted, corrected, reviewed, all")
    ls.add_argument("--deployment", default="")
    ls.add_argument("-n", type=int, default=20, help="how many (default %(default)s)")
    pl = verb("play", "play a segment's audio")
    pl.add_argument("id")
    pl.add_argument("--output", "-o", metavar="WAV", help="write the audio to this file instead of playing it")
    verb("accept", "the model's text is right").add_argument("id")
    c = verb("correct", "store the right text")
    c.add_argument("id")
    c.add_argument("text", nargs="+")
    verb("skip", "leave it for later (behind the others)").add_argument("id")
    e = verb("export", "reviewed segments as an evaluation manifest")
    e.add_argument("-o", "--output", required=True, metavar="DIR")


def _run(args: argparse.Namespace) -> int:
    with adminlink.admin_stub(args) as (stub, metadata):
        t = args.timeout
        if args.verb == "list":
            reply = stub.ListReview(
                admin_pb.ReviewListRequest(status=args.status, deployment=args.deployment, limit=args.n),
                metadata=metadata,
                timeout=t,
            )
            print(format_list(reply, args.status))
            return 0
        if args.verb == "play":
            item = stub.GetReviewItem(
                admin_pb.ReviewItemRequest(id=args.id, with_audio=True), metadata=metadata, timeout=t
            )
            print(format_item(item))
            return play(item.audio, args.output)
        if args.verb == "export":
            items = list(stub.ExportReview(admin_pb.ExportReviewRequest(), metadata=metadata, timeout=t))
            out = export(items, Path(args.output))
            print(f"wrote {len(items)} reviewed segment(s) to {out}")
            return 0
        action = {"accept": "accept", "correct": "correct", "skip": "skip"}[args.verb]
        text = " ".join(getattr(args, "text", []) or [])
        item = stub.Review(
            admin_pb.ReviewActionRequest(id=args.id, action=action, text=text), metadata=metadata, timeout=t
        )
    if action == "skip":
        print(f"{item.id}: skipped ({item.skips}×); it stays in the queue, after the others")
    else:
        print(f"{item.id}: {item.status} by {item.reviewer}: {item.final_text}")
    return 0


def format_list(reply: admin_pb.ReviewList, status: str) -> str:
    if not reply.items:
        return f"nothing {status} ({reply.pending} pending)"
    lines = [f"{'id':<12}  {'created (UTC)':<19}  {'deployment':<12}  {'secs':>5}  {'reason':<12}  text"]
    for i in reply.items:
        text = i.model_text if i.status == "pending" else i.final_text
        if i.reason == "transcribe" and i.status == "pending":
            text = "(to transcribe)"
        lines.append(
            f"{i.id:<12}  {i.created[:19]:<19}  {i.deployment:<12}  {i.audio_seconds:5.1f}  {i.reason:<12}  {text[:70]}"
        )
    lines.append(f"{reply.pending} pending")
    return "\n".join(lines)


def format_item(i: admin_pb.ReviewItem) -> str:
    why = "; ".join(i.why)
    shown = i.model_text if i.reason != "transcribe" else "(to transcribe: no model text shown)"
    return f"{i.id} ({i.deployment}, {i.audio_seconds:.1f} s, {i.reason}: {why})\n  {shown}"


def play(audio: bytes, output: str | None) -> int:
    if not audio:
        raise VoxrelayError("the item has no audio")
    if output is not None:
        Path(output).write_bytes(audio)
        print(f"wrote {output}")
        return 0
    player = shutil.which("aplay")
    if player is not None:
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            f.write(audio)
            f.flush()
            done = subprocess.run([player, "-q", f.name], check=False)
        if done.returncode == 0:
            return 0
    try:
        import sounddevice
        import soundfile
    except ImportError:
        raise InvalidArgument(
            "no way to play audio here (no working aplay, no sounddevice package); write it with --output FILE.wav"
        ) from None
    samples, rate = soundfile.read(io.BytesIO(audio), dtype="float32")
    try:
        sounddevice.play(samples, rate, blocking=True)
    except sounddevice.PortAudioError as err:
        raise InvalidArgument(f"cannot play audio here ({err}); write it with --output FILE.wav") from None
    return 0


def export(items: list[admin_pb.ReviewItem], folder: Path) -> Path:
    """Write ``folder/manifest.jsonl`` and ``folder/audio/<id>.wav``; returns the manifest's path."""
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.jsonl"
    with manifest.open("w", encoding="utf-8") as f:
        for i in items:
            name = f"audio/{i.id}.wav"
            (folder / name).write_bytes(i.audio)
            row = {
                "audio": name,
                "id": f"review-{i.id}",
                "text": i.final_text,
                "language": i.language or "en",
                "text_kind": "human_reference",
                "text_source": f"voxrelay review: {i.status} by {i.reviewer}",
                "duration_s": round(i.audio_seconds, 3),
                "deployment": i.deployment,
                "model": i.model,
                "segment_id": i.segment_id,
                "created": i.created,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return manifest

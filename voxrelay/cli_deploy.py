"""``voxrelay deploy``: see and change a recognizer's deployments and rollout over its Admin service.

    voxrelay deploy status
    voxrelay deploy add base --model base --language en --why "multilingual base, English only"
    voxrelay deploy shadow base --mirror-percent 50
    voxrelay deploy canary base --steps 5,50,100
    voxrelay deploy promote            (the next step; --switch NAME: blue-green, everything at once)
    voxrelay deploy rollback
    voxrelay deploy remove base
    voxrelay deploy audit

Every change prints what changed, one line each; a refused one prints one line and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from google.protobuf.json_format import MessageToDict

from voxrelay import adminlink
from voxrelay.errors import InvalidArgument
from voxrelay.protos import admin_pb

AUTOMATION = ("human", "shadow", "assistance", "partial", "full")


def add_serve_rollout_arguments(p: argparse.ArgumentParser) -> None:
    """The deployments, admin and review flags of ``voxrelay serve``."""
    p.add_argument(
        "--deployments",
        dest="deployments_file",
        metavar="YAML",
        help="the deployments to serve and the rollout to start with (instead of --model; see README: Rollout)",
    )
    p.add_argument(
        "--admin-token-file",
        metavar="PATH",
        help="admin tokens for the Admin service and the review page (one per line: TOKEN [NAME]), distinct "
        "from the device tokens",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the audit log and the review queue live (default $VOXRELAY_DATA_DIR, else ~/.local/share/voxrelay)",
    )
    p.add_argument("--review-port", type=int, metavar="PORT", help="serve the review page on this port (0 picks one)")


def _steps(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of percentages such as 5,25,50,100") from None


def add_deploy_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="deployments and rollouts of a recognizer (shadow, canary, blue-green)",
        description="See and change the deployments a recognizer serves and its rollout (Admin service).",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=help, description=help)
        adminlink.add_arguments(v)
        if name not in ("status", "audit"):
            v.add_argument("--why", default="", metavar="TEXT", help="the reason, for the audit log")
        v.set_defaults(run=_run)
        return v

    s = verb("status", "deployments, roles, the rollout and the last analysis")
    s.add_argument("--json", action="store_true", help="the status as JSON")
    a = verb("add", "load a deployment (idle until it is made a candidate)")
    a.add_argument("name")
    a.add_argument("--model", required=True, help="tiny.en, base, a CTranslate2 directory on the server...")
    a.add_argument("--backend", default="", help="faster-whisper (default) or openai-whisper")
    a.add_argument("--version", default="", help="the expected weights version (12 hex digits)")
    a.add_argument("--compute-type", default="", help="CTranslate2 compute type (default: the server's)")
    a.add_argument("--language", help="force this language (a deployment's options win over the client's)")
    a.add_argument("--task", choices=("transcribe", "translate"))
    a.add_argument("--beam-size", type=int)
    a.add_argument("--temperature", type=float)
    a.add_argument("--automation", choices=AUTOMATION, default="full", help="(default %(default)s)")
    sh = verb("shadow", "make a deployment the shadow of the stable one (results recorded, never returned)")
    sh.add_argument("name")
    sh.add_argument("--mirror-percent", type=float, default=100.0, help="share of segments (default %(default)g)")
    c = verb("canary", "make a deployment a canary, or set its weight")
    c.add_argument("name")
    c.add_argument("--steps", type=_steps, help="weights in percent, e.g. 5,25,50,100 (default: the server's)")
    c.add_argument("--weight", type=float, help="a weight set by hand (percent of devices)")
    pr = verb("promote", "the next step: shadow → canary, the next weight, or stable")
    pr.add_argument("name", nargs="?", default="", help="the candidate (or, with --switch, the one to switch to)")
    pr.add_argument("--switch", action="store_true", help="blue-green: switch all traffic at once")
    verb("rollback", "take the candidate out of traffic, or swap back to the previous stable")
    r = verb("remove", "unload a deployment that serves nobody")
    r.add_argument("name")
    au = verb("audit", "recent entries of the audit log")
    au.add_argument("-n", type=int, default=20, help="how many (default %(default)s)")


def _spec(args: argparse.Namespace) -> admin_pb.DeploymentSpec:
    options = admin_pb.DecodeOverrides()
    if args.language is not None:
        options.language = args.language
    if args.task is not None:
        options.task = args.task
    if args.beam_size is not None:
        options.beam_size = args.beam_size
    if args.temperature is not None:
        options.temperature = args.temperature
    return admin_pb.DeploymentSpec(
        name=args.name,
        model=args.model,
        backend=args.backend,
        version=args.version,
        compute_type=args.compute_type,
        options=options,
        automation=args.automation,
    )


def _run(args: argparse.Namespace) -> int:
    with adminlink.admin_stub(args) as (stub, metadata):
        timeout = args.timeout
        why = getattr(args, "why", "")
        if args.verb == "status":
            status = stub.GetStatus(admin_pb.StatusRequest(), metadata=metadata, timeout=timeout)
            if args.json:
                print(json.dumps(MessageToDict(status, preserving_proto_field_name=True), indent=2))
            else:
                print(format_status(status))
            return 0
        if args.verb == "audit":
            reply = stub.GetAudit(admin_pb.AuditRequest(limit=args.n), metadata=metadata, timeout=timeout)
            for entry in reply.entries:
                print(format_entry(entry))
            return 0
        if args.verb == "add":
            reply = stub.AddDeployment(
                admin_pb.AddDeploymentRequest(spec=_spec(args), reason=why), metadata=metadata, timeout=timeout
            )
        elif args.verb == "shadow":
            reply = stub.Shadow(
                admin_pb.ShadowRequest(name=args.name, mirror_percent=args.mirror_percent, reason=why),
                metadata=metadata,
                timeout=timeout,
            )
        elif args.verb == "canary":
            request = admin_pb.CanaryRequest(name=args.name, steps=args.steps or [], reason=why)
            if args.weight is not None:
                request.weight = args.weight
            reply = stub.Canary(request, metadata=metadata, timeout=timeout)
        elif args.verb == "promote":
            reply = stub.Promote(
                admin_pb.PromoteRequest(name=args.name, switch=args.switch, reason=why),
                metadata=metadata,
                timeout=timeout,
            )
        elif args.verb == "rollback":
            reply = stub.Rollback(admin_pb.RollbackRequest(reason=why), metadata=metadata, timeout=timeout)
        elif args.verb == "remove":
            reply = stub.RemoveDeployment(
                admin_pb.RemoveDeploymentRequest(name=args.name, reason=why), metadata=metadata, timeout=timeout
            )
        else:  # pragma: no cover - argparse allows only the verbs above
            raise InvalidArgument(f"unknown verb {args.verb}")
    for line in reply.changes:
        print(line)
    print(summary(reply.status))
    return 0


def summary(st: admin_pb.RolloutStatus) -> str:
    """One line: where traffic goes now."""
    if st.phase == "canary":
        steps = " → ".join(f"{s:g}" for s in st.steps)
        now = f"canary {st.candidate} at {st.weight:g}% of devices (steps {steps}), {st.stable} the rest"
    elif st.phase == "shadow":
        now = f"{st.stable} serves everyone; shadow {st.candidate} hears {st.mirror_percent:g}% of segments"
    else:
        now = f"{st.stable} serves everyone"
    if st.previous:
        now += f"; {st.previous} kept loaded for a rollback ({st.previous_seconds_left:.0f} s left)"
    return f"now: {now}"


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def format_status(st: admin_pb.RolloutStatus) -> str:
    lines = [summary(st)]
    if st.phase != "steady" or st.verifying:
        lines.append(
            f"analysis every {st.interval_seconds:g} s: {st.passes} of {st.promote_after} passes to move on "
            f"({'by itself' if st.auto_promote else 'then waits for deploy promote'}), {st.failures} of "
            f"{st.failure_limit} failures to roll back"
        )
    rows: list[list[Any]] = [["deployment", "role", "model", "version", "backend", "options", "automation", "results"]]
    for d in st.deployments:
        options = MessageToDict(d.spec.options, preserving_proto_field_name=True)
        rows.append(
            [
                d.spec.name,
                d.role,
                d.spec.model,
                d.version,
                f"{d.spec.backend} {d.compute}",
                ", ".join(f"{k}={v}" for k, v in options.items()) or "-",
                d.spec.automation or "full",
                f"{d.results} ok, {d.errors} failed"
                + (f", shadow {d.shadow_compared} compared/{d.shadow_dropped} dropped" if d.role == "shadow" else ""),
            ]
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines.append("")
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    a = st.analysis
    if a.result:
        lines.append("")
        lines.append(f"last analysis ({a.age_seconds:.0f} s ago), {a.candidate} against {a.baseline}: {a.result}")
        for c in a.checks:
            against = "" if c.check == "disagreement_wer" else f" vs {_fmt(c.baseline)}"
            lines.append(
                f"  {c.check:<17} {c.result:<12} {_fmt(c.candidate)}{against}  ({c.limit}; "
                f"{c.candidate_samples}/{c.baseline_samples} samples){'  ' + c.note if c.note else ''}"
            )
    if st.recent:
        lines.append("")
        lines.append("recent changes:")
        lines += ["  " + format_entry(e) for e in st.recent]
    lines.append("")
    lines.append(f"audit log: {st.audit_log or '(in memory)'}; review queue: {st.review_queue or '(off)'}")
    return "\n".join(lines)


def format_entry(e: admin_pb.AuditEntry) -> str:
    why = f" — {e.why}" if e.why else ""
    return f"{e.time} {e.who}: {e.action}: {'; '.join(e.changes)}{why}"

"""The rollout and the review queue as Admin messages (protobuf stays at the wire)."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

from voxrelay.cloud.rollout.audit import AuditEntry
from voxrelay.cloud.rollout.config import Automation, DecodeOverrides, DeploymentSpec
from voxrelay.cloud.rollout.controller import RolloutController
from voxrelay.errors import InvalidArgument
from voxrelay.protos import admin_pb
from voxrelay.review.queue import Item


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def overrides_pb(o: DecodeOverrides) -> admin_pb.DecodeOverrides:
    return admin_pb.DecodeOverrides(**o.as_dict())


def spec_pb(spec: DeploymentSpec) -> admin_pb.DeploymentSpec:
    return admin_pb.DeploymentSpec(
        name=spec.name,
        model=spec.model,
        backend=spec.backend,
        version=spec.version,
        compute_type=spec.compute_type,
        options=overrides_pb(spec.options),
        automation=spec.automation.value,
    )


def spec_from_pb(msg: admin_pb.DeploymentSpec, default_compute: str) -> DeploymentSpec:
    """A deployment from an AddDeployment request; every field checked as in a deployments file."""
    o = msg.options
    options = DecodeOverrides(
        language=o.language if o.HasField("language") else None,
        task=o.task if o.HasField("task") else None,
        beam_size=o.beam_size if o.HasField("beam_size") else None,
        temperature=round(o.temperature, 4) if o.HasField("temperature") else None,
        initial_prompt=o.initial_prompt if o.HasField("initial_prompt") else None,
        hotwords=o.hotwords if o.HasField("hotwords") else None,
    )
    if not msg.model:
        raise InvalidArgument(f"deployment {msg.name or '?'}: model is needed (a model name or a directory)")
    return DeploymentSpec(
        name=msg.name,
        model=msg.model,
        backend=msg.backend or "faster-whisper",
        version=msg.version,
        compute_type=msg.compute_type or default_compute,
        options=options,
        # An unknown level is refused by DeploymentSpec, naming the known ones.
        automation=msg.automation or Automation.FULL,  # type: ignore[arg-type]
    )


def audit_pb(entry: AuditEntry) -> admin_pb.AuditEntry:
    return admin_pb.AuditEntry(
        time=entry.time,
        who=entry.who,
        action=entry.action,
        target=entry.target,
        why=entry.why,
        changes=list(entry.changes),
        figures_json=json.dumps(entry.figures, default=str) if entry.figures else "",
    )


def status_pb(controller: RolloutController) -> admin_pb.RolloutStatus:
    st = controller.state
    a = controller.analysis
    now = time.monotonic()
    deployments = []
    for name, d in controller.deployments.items():
        m = d.model
        deployments.append(
            admin_pb.DeploymentStatus(
                spec=spec_pb(d.spec),
                role=st.role(name).value,
                version=m.version,
                compute=m.compute,
                multilingual=m.multilingual,
                results=d.counters.results,
                errors=d.counters.errors,
                shadow_compared=d.counters.shadow_compared,
                shadow_dropped=d.counters.shadow_dropped,
            )
        )
    analysis = admin_pb.Analysis()
    last = controller.last
    if last is not None:
        analysis = admin_pb.Analysis(
            result=last.result.verdict.value,
            checks=[
                admin_pb.CheckResult(
                    check=c.check,
                    result=c.verdict.value,
                    candidate=_nan(c.candidate),
                    baseline=_nan(c.baseline),
                    limit=c.limit,
                    candidate_samples=c.samples[0],
                    baseline_samples=c.samples[1],
                    note=c.note,
                )
                for c in last.result.checks
            ],
            age_seconds=now - last.at,
            candidate=last.candidate,
            baseline=last.baseline,
        )
    review = controller.review
    return admin_pb.RolloutStatus(
        deployments=deployments,
        stable=st.stable,
        phase=st.phase.value,
        candidate=st.candidate or "",
        weight=st.weight,
        mirror_percent=st.mirror_percent,
        steps=list(st.steps),
        previous=st.previous or "",
        previous_seconds_left=max(0.0, (st.previous_until or now) - now) if st.previous else 0.0,
        verifying=st.verifying,
        passes=st.passes,
        failures=st.failures,
        failure_limit=a.failure_limit,
        promote_after=a.promote_after,
        auto_promote=a.auto_promote,
        interval_seconds=a.interval_seconds,
        analysis=analysis,
        recent=[audit_pb(e) for e in controller.audit.recent(10)],
        audit_log=str(controller.audit.path or ""),
        review_queue=str(review.path) if review is not None else "",
    )


def item_pb(item: Item) -> admin_pb.ReviewItem:
    s = item.signals
    return admin_pb.ReviewItem(
        id=item.id,
        created=datetime.fromtimestamp(item.created, UTC).isoformat(timespec="seconds"),
        deployment=item.deployment,
        model=item.model,
        segment_id=item.segment_id,
        reason=item.reason,
        why=list(item.why),
        language=item.language,
        model_text=item.model_text,
        audio_seconds=item.audio_seconds,
        status=item.status,
        final_text=item.final_text or "",
        reviewer=item.reviewer or "",
        audio=item.audio or b"",
        avg_logprob=s.get("avg_logprob", math.nan),
        no_speech_prob=s.get("no_speech_prob", math.nan),
        compression_ratio=s.get("compression_ratio", math.nan),
        skips=item.skips,
    )

"""The recognizer's side of monitoring: its monitor built from the settings, and segments handed to it.

Everything here is cheap on the request path: :func:`observation` only gathers references to what
the session already holds (the decoded audio, the edge's VAD figures, the result's fields); the
monitor's own thread does the measuring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from voxrelay.cloud.backends.base import ModelDescriptor
from voxrelay.cloud.settings import ServerSettings
from voxrelay.errors import InvalidArgument
from voxrelay.monitoring.board import Deployment
from voxrelay.monitoring.calibration import load_calibration
from voxrelay.monitoring.features import SegmentObservation, VadFeatures
from voxrelay.monitoring.monitor import Monitor
from voxrelay.monitoring.profile import ModelRef, ReferenceProfile, load_profile
from voxrelay.monitoring.thresholds import load_thresholds
from voxrelay.protos import pb


def vad_features(stats: pb.VadStats | None) -> VadFeatures | None:
    """The edge VAD's figures from a SegmentEnd, if it sent any."""
    if stats is None or not stats.vad:
        return None
    values = (stats.speech_ratio, stats.mean_speech_probability, stats.level_dbfs, stats.clipping_ratio)
    if not all(math.isfinite(v) for v in values):
        return None
    return VadFeatures(
        speech_ratio=min(max(stats.speech_ratio, 0.0), 1.0),
        mean_speech_probability=min(max(stats.mean_speech_probability, 0.0), 1.0),
        level_dbfs=min(max(stats.level_dbfs, -120.0), 0.0),
        clipping_ratio=min(max(stats.clipping_ratio, 0.0), 1.0),
    )


def observation(
    result: pb.RecognitionResult, audio: np.ndarray | None, vad: VadFeatures | None, session: str
) -> SegmentObservation:
    return SegmentObservation(
        audio=audio,
        audio_seconds=result.timings.audio_seconds,
        text=result.text,
        avg_logprob=result.avg_logprob,
        no_speech_prob=result.no_speech_prob,
        compression_ratio=result.compression_ratio,
        language=result.language,
        has_phrases=len(result.phrases) > 0,
        vad=vad,
        session=session,
        start=result.start_seconds,
        end=result.end_seconds,
    )


def model_ref(model: ModelDescriptor) -> ModelRef:
    return ModelRef(model.name, model.version, model.backend)


def assign_profiles(paths: Sequence[str], models: Mapping[str, ModelDescriptor]) -> dict[str, ReferenceProfile]:
    """Each profile to the served model it was made for; a profile for a model not served is refused."""
    out: dict[str, ReferenceProfile] = {}
    for path in paths:
        profile = load_profile(path)
        match = [name for name, m in models.items() if m.version and m.version == profile.model.version]
        if not match:
            match = [name for name, m in models.items() if not profile.model.version and m.name == profile.model.name]
        if not match:
            served = ", ".join(f"{m.name} (version {m.version})" for m in models.values())
            raise InvalidArgument(
                f"--profile {path}: made for model {profile.model.name} (version {profile.model.version}), which "
                f"this server does not serve (it serves {served}); make one with `voxrelay profile --model NAME`"
            )
        name = match[0]
        if name in out:
            raise InvalidArgument(f"--profile {path}: a second profile for model {name}; give one per model")
        out[name] = profile
    return out


def build_monitor(
    settings: ServerSettings, models: Mapping[str, ModelDescriptor], registry: CollectorRegistry
) -> Monitor | None:
    """The service's monitor as the settings ask (None when monitoring is off); not started yet."""
    if not settings.monitoring:
        return None
    thresholds = load_thresholds(settings.thresholds_file)
    profiles = assign_profiles(settings.profiles, models)
    calibration = load_calibration(settings.calibration_file)
    refs = {name: model_ref(m) for name, m in models.items()}
    return Monitor(refs, thresholds.drift, registry, profiles, calibration)


def monitoring_info(monitor: Monitor | None) -> list[pb.MonitoringInfo]:
    if monitor is None:
        return []
    return [
        pb.MonitoringInfo(
            model=state.model,
            reference_source=state.reference_source,
            reference_origin=state.reference_origin,
            reference_segments=state.reference_segments,
            learn_segments=state.learn_segments,
            reference_created=state.profile_created,
            drifting=state.alarms,
            estimated_wer=state.estimated_wer,
        )
        for state in monitor.states()
    ]


class ServedModels:
    """The deployments the live page lists: each loaded deployment with its role in the rollout."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def deployments(self) -> list[Deployment]:
        rollout = self.core.rollout
        st = rollout.state
        counts = {name: float(d.counters.results) for name, d in rollout.deployments.items()}
        total = sum(counts.values())
        states = {s.model: s for s in self.core.monitor.states()} if self.core.monitor is not None else {}
        out = []
        for name, d in rollout.deployments.items():
            m = d.model
            state = states.get(name)
            if state is None:
                reference = "monitoring off"
            elif state.reference_source == "learning":
                reference = f"learning ({state.reference_segments}/{state.learn_segments} segments)"
            elif state.reference_source == "learned":
                reference = f"learned from {state.reference_origin}"
            else:
                reference = f"profile ({state.reference_source}: {state.reference_origin})"
            role = st.role(name).value
            if role == "canary":
                role = f"canary {st.weight:g}%"
            elif role == "shadow":
                role = f"shadow ({st.mirror_percent:g}% mirrored)"
            out.append(
                Deployment(
                    name=name,
                    model=m.name,
                    version=m.version,
                    backend=f"{m.backend} {m.compute}",
                    slot=role,
                    share=counts[name] / total if total else 0.0,
                    reference=reference,
                )
            )
        return out

"""A loaded deployment, and an engine as one session or call sees it (:class:`Assignment`).

Sessions and unary calls hold an :class:`Assignment` where they used to hold an engine: it has the
engine's ``model``, ``count_tokens``, ``estimate`` and ``recognize``, applies the deployment's decode
options, and names the deployment and the role it had when the assignment was made. A segment keeps
the assignment it started with, so it finishes on the deployment that started it whatever the rollout
does meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from voxrelay.cloud.backends.base import DecodeOptions, ModelDescriptor, Transcript
from voxrelay.cloud.engine import InferenceEngine, Recognition, Ticket
from voxrelay.cloud.rollout.analysis import SampleWindow
from voxrelay.cloud.rollout.config import Automation, DeploymentSpec
from voxrelay.cloud.rollout.engines import DeploymentEngine
from voxrelay.cloud.scheduler import Priority


@dataclass
class Counters:
    results: int = 0
    errors: int = 0
    shadow_compared: int = 0
    shadow_dropped: int = 0


class Deployment:
    """A deployment with its engine, its recent samples and its counters."""

    def __init__(self, spec: DeploymentSpec, holder: DeploymentEngine, keep_seconds: float) -> None:
        self.spec = spec
        self.holder = holder
        self.window = SampleWindow(keep_seconds)
        self.counters = Counters()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def engine(self) -> InferenceEngine:
        return self.holder.engine

    @property
    def model(self) -> ModelDescriptor:
        return self.holder.engine.model

    def options(self, client: DecodeOptions) -> DecodeOptions:
        """The client's options with the deployment's own on top."""
        overrides = self.spec.options.as_dict()
        return replace(client, **overrides) if overrides else client


class Assignment:
    """One deployment in one role, for one session (until the rollout changes) or one call."""

    def __init__(self, deployment: Deployment, role: str, generation: int, pinned: bool = False) -> None:
        self.deployment = deployment
        self.role = role
        self.generation = generation
        self.pinned = pinned  # the client named the deployment: the rollout does not move it

    @property
    def name(self) -> str:
        return self.deployment.name

    @property
    def engine(self) -> InferenceEngine:
        return self.deployment.engine

    @property
    def model(self) -> ModelDescriptor:
        return self.deployment.model

    @property
    def automation(self) -> Automation:
        return self.deployment.spec.automation

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    def estimate(self, audio_seconds: float, options: DecodeOptions) -> float:
        if self.automation is Automation.HUMAN:
            return 0.0
        return self.engine.estimate(audio_seconds, self.deployment.options(options))

    async def recognize(
        self,
        audio: np.ndarray,
        options: DecodeOptions,
        client: str = "",
        priority: Priority = Priority.FINAL,
        deadline: float | None = None,
        ticket: Ticket | None = None,
    ) -> Recognition:
        """Recognise with the deployment's options; a ``human`` deployment runs no model at all (a
        person transcribes the segment from the review queue). Interim work decodes the cheapest way
        whatever the deployment sets (see ``DecodeOptions.for_interim``), and is dropped unrun after
        ``deadline`` (perf_counter time)."""
        if self.automation is Automation.HUMAN:
            language = self.deployment.spec.options.language or options.language or ""
            return Recognition(Transcript("", (), language, 0.0), 0.0, 0.0)
        chosen = self.deployment.options(options)
        if priority == Priority.INTERIM:
            chosen = chosen.for_interim()
        return await self.engine.recognize(audio, chosen, client, priority, deadline, ticket)

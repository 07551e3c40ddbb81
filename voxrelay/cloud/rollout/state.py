"""The rollout as a value: which deployment is stable, which is the candidate and how far it has come.

Every change is a pure function from one :class:`RolloutState` to the next that returns the new state
and what changed, in words; a request that the state does not allow raises and changes nothing. The
controller applies the result in one assignment, so routing never sees half a change (the blue-green
"atomic switch" is this assignment).

Phases: ``steady`` (the stable serves everyone; after a switch the old stable is kept as ``previous``
for a grace period, and the new one is verified against it), ``shadow`` (the candidate also recognises
a share of the segments, its results only recorded) and ``canary`` (the candidate serves a share of the
devices, raised step by step).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from voxrelay.cloud.rollout.analysis import Verdict
from voxrelay.cloud.rollout.config import AnalysisSettings, check_percent, check_steps
from voxrelay.errors import FailedPrecondition, InvalidArgument, NotFound


class Phase(StrEnum):
    STEADY = "steady"
    SHADOW = "shadow"
    CANARY = "canary"


class Role(StrEnum):
    STABLE = "stable"
    CANARY = "canary"
    SHADOW = "shadow"
    PREVIOUS = "previous"  # the old stable during its grace period: a rollback is a pointer swap
    IDLE = "idle"  # loaded, serving nobody (unless a client names it)


@dataclass(frozen=True)
class Change:
    """A new state and what changed, one line per change."""

    state: RolloutState
    lines: tuple[str, ...]
    action: str


@dataclass(frozen=True)
class RolloutState:
    stable: str
    deployments: tuple[str, ...]
    phase: Phase = Phase.STEADY
    candidate: str | None = None
    mirror_percent: float = 0.0
    weight: float = 0.0
    steps: tuple[float, ...] = ()
    step: int = -1  # index into steps; -1: a weight set by hand
    previous: str | None = None
    previous_until: float | None = None  # monotonic time the old stable is released
    verifying: bool = False  # the new stable of a switch is being checked against the previous one
    switched_at: float | None = None
    passes: int = 0
    failures: int = 0
    started_at: float | None = None  # when the current candidate (or verification) began
    generation: int = 0

    def role(self, name: str) -> Role:
        if name == self.stable:
            return Role.STABLE
        if name == self.candidate:
            return Role.SHADOW if self.phase is Phase.SHADOW else Role.CANARY
        if name == self.previous:
            return Role.PREVIOUS
        return Role.IDLE

    @property
    def analysing(self) -> bool:
        return self.candidate is not None or self.verifying

    def _next(self, **changes: object) -> RolloutState:
        return replace(self, generation=self.generation + 1, **changes)  # type: ignore[arg-type]

    def need(self, name: str) -> None:
        if name not in self.deployments:
            raise NotFound(f"deployment {name!r} is not loaded here (loaded: {', '.join(self.deployments)})")

    def _candidate_free(self, name: str) -> None:
        self.need(name)
        if name == self.stable:
            raise FailedPrecondition(f"deployment {name!r} is the stable one already; a candidate must be another")
        if self.candidate is not None and self.candidate != name:
            raise FailedPrecondition(
                f"deployment {self.candidate!r} is the candidate now ({self.phase.value}); promote it or roll it "
                f"back before starting {name!r}"
            )

    # Deployments.

    def add(self, name: str) -> Change:
        if name in self.deployments:
            raise FailedPrecondition(f"deployment {name!r} is loaded already; remove it first to change it")
        state = self._next(deployments=(*self.deployments, name))
        return Change(state, (f"{name}: loaded, idle (serving nobody until it is made a candidate)",), "add")

    def remove(self, name: str) -> Change:
        self.need(name)
        if name == self.stable:
            raise FailedPrecondition(f"deployment {name!r} is the stable one and cannot be removed; promote another")
        if name == self.candidate:
            raise FailedPrecondition(f"deployment {name!r} is the candidate; roll it back before removing it")
        lines = [f"{name}: unloaded"]
        previous, until = self.previous, self.previous_until
        if name == self.previous:
            previous, until = None, None
            lines.append(f"{name}: its grace period ends early; a rollback is no longer possible")
        state = self._next(
            deployments=tuple(d for d in self.deployments if d != name),
            previous=previous,
            previous_until=until,
            verifying=self.verifying and previous is not None,
        )
        return Change(state, tuple(lines), "remove")

    # Rollouts.

    def shadow(self, name: str, mirror_percent: float, now: float) -> Change:
        self._candidate_free(name)
        mirror = check_percent("mirror_percent", mirror_percent)
        if self.candidate == name and self.phase is Phase.CANARY:
            raise FailedPrecondition(f"deployment {name!r} is a canary already; roll it back to shadow it again")
        if self.candidate == name:
            state = self._next(mirror_percent=mirror)
            line = f"{name}: shadow mirror {self.mirror_percent:g}% → {mirror:g}% of segments"
            return Change(state, (line,), "shadow")
        state = self._next(
            phase=Phase.SHADOW,
            candidate=name,
            mirror_percent=mirror,
            weight=0.0,
            steps=(),
            step=-1,
            passes=0,
            failures=0,
            started_at=now,
            verifying=False,
        )
        lines = (
            f"{name}: {self.role(name).value} → shadow of {self.stable}, {mirror:g}% of segments mirrored "
            "(results recorded, never returned)",
        )
        return Change(state, lines, "shadow")

    def canary(
        self,
        name: str,
        now: float,
        settings: AnalysisSettings,
        steps: tuple[float, ...] | None = None,
        weight: float | None = None,
    ) -> Change:
        self._candidate_free(name)
        plan = check_steps("steps", steps) if steps else settings.steps
        if weight is not None:
            weight = check_percent("weight", weight)
        fresh = self.candidate != name
        was = self.role(name).value
        if weight is None:
            weight, step = plan[0], 0
        else:
            step = plan.index(weight) if weight in plan else -1
        if weight >= 100 and step == -1:
            raise InvalidArgument("weight: 100 would make the canary serve everyone; use `deploy promote` instead")
        state = self._next(
            phase=Phase.CANARY,
            candidate=name,
            weight=weight,
            steps=plan,
            step=step,
            mirror_percent=0.0,
            passes=0,
            failures=0 if fresh else self.failures,
            started_at=now if fresh or self.phase is not Phase.CANARY else self.started_at,
            verifying=False,
        )
        old = f"{self.weight:g}%" if self.phase is Phase.CANARY and not fresh else was
        steps_text = " → ".join(f"{s:g}" for s in plan)
        line = f"{name}: {old} → canary at {weight:g}% of devices (steps {steps_text} %)"
        return Change(state, (line,), "canary")

    def promote(
        self, now: float, grace: float, settings: AnalysisSettings, name: str | None = None, switch: bool = False
    ) -> Change:
        """The next step: shadow → first canary step; canary → next step; last step → stable. ``switch``:
        a blue-green switch of everything to ``name`` (or the candidate) at once."""
        if switch:
            target = name or self.candidate
            if target is None:
                raise FailedPrecondition("no candidate to switch to; name the deployment: deploy promote NAME --switch")
            self.need(target)
            if target == self.stable:
                raise FailedPrecondition(f"deployment {target!r} is the stable one already")
            if self.candidate is not None and target != self.candidate:
                raise FailedPrecondition(
                    f"deployment {self.candidate!r} is the candidate now; roll it back before switching to {target!r}"
                )
            return self._switch(target, now, grace, "switch", f"blue-green switch: {self.stable} → {target} at once")
        if self.candidate is None:
            raise FailedPrecondition(
                "no candidate to promote; start one with `voxrelay deploy shadow NAME` or `voxrelay deploy canary NAME`"
            )
        if name is not None and name != self.candidate:
            self.need(name)
            raise InvalidArgument(f"deployment {name!r} is not the candidate (the candidate is {self.candidate!r})")
        candidate = self.candidate
        if self.phase is Phase.SHADOW:
            return self.canary(candidate, now, settings)
        steps = self.steps
        later = [s for s in steps if s > self.weight]
        if later and later[0] < 100:
            state = self._next(weight=later[0], step=steps.index(later[0]), passes=0)
            return Change(state, (f"{candidate}: canary {self.weight:g}% → {later[0]:g}% of devices",), "step")
        line = f"{candidate}: canary {self.weight:g}% → 100%, now stable"
        return self._switch(candidate, now, grace, "promote", line)

    def _switch(self, target: str, now: float, grace: float, action: str, line: str) -> Change:
        old = self.stable
        state = self._next(
            stable=target,
            phase=Phase.STEADY,
            candidate=None,
            weight=0.0,
            mirror_percent=0.0,
            steps=(),
            step=-1,
            previous=old if grace > 0 else None,
            previous_until=now + grace if grace > 0 else None,
            verifying=grace > 0,
            switched_at=now,
            passes=0,
            failures=0,
            started_at=now,
        )
        kept = (
            f"{old}: stable → previous, kept loaded for {grace:g} s (a rollback is a pointer swap)"
            if grace > 0
            else f"{old}: stable → idle"
        )
        return Change(state, (line, kept), action)

    def rollback(self, now: float) -> Change:
        if self.candidate is not None:
            name = self.candidate
            was = (
                f"shadow ({self.mirror_percent:g}% mirrored)"
                if self.phase is Phase.SHADOW
                else f"canary {self.weight:g}%"
            )
            state = self._next(
                phase=Phase.STEADY,
                candidate=None,
                weight=0.0,
                mirror_percent=0.0,
                steps=(),
                step=-1,
                passes=0,
                failures=0,
                started_at=None,
            )
            return Change(state, (f"{name}: {was} → idle; {self.stable} serves everyone",), "rollback")
        if self.previous is not None:
            back, bad = self.previous, self.stable
            state = self._next(
                stable=back,
                previous=None,
                previous_until=None,
                verifying=False,
                passes=0,
                failures=0,
                started_at=None,
            )
            return Change(state, (f"pointer swap: {bad} → {back}; {bad}: stable → idle",), "rollback")
        raise FailedPrecondition("nothing to roll back: no candidate, and no previous stable within its grace period")

    def expire(self, now: float) -> Change | None:
        """The old stable's grace period has ended: it is released (None if nothing is due)."""
        if self.previous is None or self.previous_until is None or now < self.previous_until:
            return None
        old = self.previous
        state = self._next(
            previous=None,
            previous_until=None,
            verifying=False,
            deployments=tuple(d for d in self.deployments if d != old),
        )
        return Change(state, (f"{old}: grace period over, unloaded",), "release")

    # Analysis outcomes.

    def judged(self, verdict: Verdict, settings: AnalysisSettings, now: float, grace: float) -> Change | None:
        """What an interval's verdict does: count it, and roll back, step or promote when due."""
        if not self.analysing:
            return None
        if verdict is Verdict.INCONCLUSIVE:
            return None
        if verdict is Verdict.FAIL:
            failures = self.failures + 1
            if failures >= settings.failure_limit:
                change = self.rollback(now)
                limit = settings.failure_limit
                line = f"analysis failed {failures} time(s) (failure_limit {limit}): automatic rollback"
                return Change(change.state, (line, *change.lines), "auto-rollback")
            state = replace(self, failures=failures, passes=0)
            return Change(state, (f"analysis failed ({failures} of failure_limit {settings.failure_limit})",), "fail")
        passes = self.passes + 1
        if passes < settings.promote_after:
            state = replace(self, passes=passes)
            return Change(state, (f"analysis passed ({passes} of {settings.promote_after})",), "pass")
        if self.verifying:
            state = replace(self, verifying=False, passes=passes)
            return Change(state, (f"{self.stable}: verified after the switch ({passes} passed intervals)",), "verified")
        if not settings.auto_promote:
            state = replace(self, passes=passes)
            line = f"analysis passed {passes} time(s): waiting for `voxrelay deploy promote`"
            return Change(state, (line,), "await-promote")
        change = self.promote(now, grace, settings)
        lines = (f"analysis passed {passes} time(s): moving on", *change.lines)
        return Change(change.state, lines, f"auto-{change.action}")

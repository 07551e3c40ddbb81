"""What a deployment is and how a rollout is judged: frozen settings, validated when built, read from YAML.

A *deployment* is a named model served in a particular way: its backend, model, expected weights
version, decode options and degree of automation. A deployments file declares the deployments a
recognizer serves, which one is stable, and (optionally) a candidate to roll out::

    stable: tiny
    deployments:
      tiny: {model: tiny.en}
      base: {model: base, options: {language: en}, automation: partial}
    candidate: {name: base, strategy: shadow, mirror_percent: 50}
    analysis: {interval_seconds: 30, min_samples: 20, failure_limit: 2, steps: [5, 25, 50, 100]}

Every field is checked here, and an unknown key is refused with its name: a typo in a rollout file must
not silently become a default.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from voxrelay.errors import InvalidArgument

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
BACKENDS = ("faster-whisper", "openai-whisper")
VERSION = re.compile(r"^[0-9a-f]{12}$")


class Automation(StrEnum):
    """How much of a deployment's output goes out without a human, from least to most."""

    HUMAN = "human"  # the model does not run: every segment is queued for a person to transcribe
    SHADOW = "shadow"  # the model runs, its text is kept from clients and reviewers; people transcribe
    ASSISTANCE = "assistance"  # every result goes out marked needs_review and is queued as a suggestion
    PARTIAL = "partial"  # results below the confidence threshold go out marked needs_review, and are queued
    FULL = "full"  # results go out as they are; nothing is queued

    @property
    def reviews(self) -> bool:
        return self is not Automation.FULL

    @property
    def withholds_text(self) -> bool:
        """Clients get no machine text (a person's transcript is the output)."""
        return self in (Automation.HUMAN, Automation.SHADOW)


class Strategy(StrEnum):
    SHADOW = "shadow"
    CANARY = "canary"
    BLUE_GREEN = "blue-green"


def check_name(field_name: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise InvalidArgument(
            f"{field_name}: {value!r} is not a deployment name (1..63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit)"
        )
    return value


def check_percent(field_name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{field_name}: {value!r} is not a number (a percentage, 0..100)")
    if not 0 <= value <= 100:
        raise InvalidArgument(f"{field_name}: {value:g} is outside 0..100 (a percentage)")
    return float(value)


def _number(field_name: str, value: Any, low: float, high: float, integer: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise InvalidArgument(f"{field_name}: {value!r} is not {'a whole number' if integer else 'a number'}")
    if not low <= value <= high:
        raise InvalidArgument(f"{field_name}: {value:g} is out of range ({low:g}..{high:g})")
    return value


@dataclass(frozen=True)
class DecodeOverrides:
    """Decode options a deployment sets; they win over the client's (a deployment is a model *and* how
    it decodes). ``None`` leaves the client's choice (or the server default)."""

    language: str | None = None
    task: str | None = None
    beam_size: int | None = None
    temperature: float | None = None
    initial_prompt: str | None = None
    hotwords: str | None = None

    def __post_init__(self) -> None:
        if self.language is not None and not (
            isinstance(self.language, str) and 2 <= len(self.language) <= 8 and self.language.isalpha()
        ):
            raise InvalidArgument(f"options.language: {self.language!r} is not a language code such as 'en'")
        if self.task is not None and self.task not in ("transcribe", "translate"):
            raise InvalidArgument(f"options.task: {self.task!r} is not one of transcribe, translate")
        if self.beam_size is not None:
            _number("options.beam_size", self.beam_size, 1, 10, integer=True)
        if self.temperature is not None:
            _number("options.temperature", self.temperature, 0.0, 1.0)
        for name in ("initial_prompt", "hotwords"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > 1784):
                raise InvalidArgument(f"options.{name}: must be text of at most 1784 characters")

    def describe(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) is not None]
        return ", ".join(parts) or "client's choice"

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class ReviewPolicy:
    """When a result of a ``partial`` deployment is not trusted: any one signal past its bound."""

    min_avg_logprob: float = -0.8
    max_no_speech_prob: float = 0.6
    max_compression_ratio: float = 2.4
    # The label-free estimate of the segment's WER (from Whisper's confidence signals).
    max_estimated_wer: float = 0.35

    def __post_init__(self) -> None:
        _number("review.min_avg_logprob", self.min_avg_logprob, -20.0, 0.0)
        _number("review.max_no_speech_prob", self.max_no_speech_prob, 0.0, 1.0)
        _number("review.max_compression_ratio", self.max_compression_ratio, 0.0, 100.0)
        _number("review.max_estimated_wer", self.max_estimated_wer, 0.0, 1.0)


@dataclass(frozen=True)
class DeploymentSpec:
    """One named deployment."""

    name: str
    model: str = "tiny.en"
    backend: str = "faster-whisper"
    # The weights' content version (12 hex digits, as GetInfo shows it); "" accepts whatever loads.
    version: str = ""
    compute_type: str = "int8"
    options: DecodeOverrides = field(default_factory=DecodeOverrides)
    automation: Automation = Automation.FULL
    review: ReviewPolicy = field(default_factory=ReviewPolicy)

    def __post_init__(self) -> None:
        check_name("name", self.name)
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidArgument(f"deployment {self.name}: model must be a model name or a directory")
        if self.backend not in BACKENDS:
            raise InvalidArgument(
                f"deployment {self.name}: backend {self.backend!r} is not one of {', '.join(BACKENDS)}"
            )
        if self.version and not VERSION.match(self.version):
            raise InvalidArgument(
                f"deployment {self.name}: version {self.version!r} is not a weights version (12 hex digits, "
                "as `voxrelay deploy status` shows)"
            )
        if not isinstance(self.automation, Automation):
            try:
                object.__setattr__(self, "automation", Automation(self.automation))
            except ValueError:
                levels = ", ".join(a.value for a in Automation)
                raise InvalidArgument(
                    f"deployment {self.name}: automation {self.automation!r} is not one of {levels}"
                ) from None

    @property
    def load_key(self) -> str:
        """Deployments with the same key share one loaded model."""
        return f"{self.model}|{self.backend}|{self.compute_type}"


@dataclass(frozen=True)
class Thresholds:
    """How far the candidate may fall behind the stable before a check fails (``None``: check off)."""

    # Share of segments that failed, candidate minus stable.
    error_ratio_increase: float | None = 0.02
    # Candidate p95 latency over stable p95 latency.
    latency_p95_ratio: float | None = 1.5
    # Share of results with no text, candidate minus stable.
    empty_ratio_increase: float | None = 0.05
    # Mean avg_logprob, stable minus candidate.
    avg_logprob_decrease: float | None = 0.25
    # Mean label-free WER estimate, candidate minus stable.
    estimated_wer_increase: float | None = 0.05
    # Word-weighted WER of the candidate's transcript against the stable's, same segments (shadow).
    disagreement_wer: float | None = 0.35

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                _number(f"analysis.thresholds.{f.name}", value, 0.0, 1000.0)


@dataclass(frozen=True)
class AnalysisSettings:
    """How often a candidate is judged, on how much traffic, and what follows (Argo's AnalysisTemplate,
    Flagger's canary analysis)."""

    interval_seconds: float = 30.0
    # The samples judged each interval: those of the last window (at least the interval).
    window_seconds: float | None = None
    # Fewer samples than this on either side: the check is inconclusive (never a pass).
    min_samples: int = 20
    # Failed intervals after which the candidate is rolled back automatically.
    failure_limit: int = 2
    # Passed intervals after which the rollout moves on (next step, or promotion).
    promote_after: int = 3
    # Move on by itself after promote_after passes; False: wait for `voxrelay deploy promote`.
    auto_promote: bool = True
    # Canary weights, in percent of devices, ending at 100.
    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        _number("analysis.interval_seconds", self.interval_seconds, 0.05, 86400.0)
        if self.window_seconds is not None:
            _number("analysis.window_seconds", self.window_seconds, self.interval_seconds, 7 * 86400.0)
        _number("analysis.min_samples", self.min_samples, 1, 1_000_000, integer=True)
        _number("analysis.failure_limit", self.failure_limit, 1, 1000, integer=True)
        _number("analysis.promote_after", self.promote_after, 1, 1000, integer=True)
        check_steps("analysis.steps", self.steps)

    @property
    def window(self) -> float:
        return self.window_seconds if self.window_seconds is not None else self.interval_seconds


def check_steps(field_name: str, steps: Any) -> tuple[float, ...]:
    if not isinstance(steps, list | tuple) or not steps:
        raise InvalidArgument(f"{field_name}: must be a list of weights in percent, e.g. [5, 25, 50, 100]")
    values = tuple(check_percent(f"{field_name}[{i}]", s) for i, s in enumerate(steps))
    if any(b <= a for a, b in itertools.pairwise(values)) or values[0] <= 0:
        raise InvalidArgument(f"{field_name}: {list(values)} must rise, above 0, step by step")
    if values[-1] != 100:
        raise InvalidArgument(f"{field_name}: {list(values)} must end at 100 (the candidate serving everyone)")
    return values


@dataclass(frozen=True)
class CandidateSpec:
    """A rollout to begin with: which deployment, how."""

    name: str
    strategy: Strategy = Strategy.CANARY
    mirror_percent: float = 100.0

    def __post_init__(self) -> None:
        check_name("candidate.name", self.name)
        if not isinstance(self.strategy, Strategy):
            try:
                object.__setattr__(self, "strategy", Strategy(self.strategy))
            except ValueError:
                names = ", ".join(s.value for s in Strategy)
                raise InvalidArgument(f"candidate.strategy: {self.strategy!r} is not one of {names}") from None
        check_percent("candidate.mirror_percent", self.mirror_percent)


@dataclass(frozen=True)
class RolloutConfig:
    """Everything a deployments file says."""

    deployments: tuple[DeploymentSpec, ...]
    stable: str
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    candidate: CandidateSpec | None = None
    # After a switch (blue-green, or a finished canary) the old stable stays loaded this long, so that a
    # rollback is a pointer swap.
    grace_seconds: float = 600.0
    # Review items (audio and text) are deleted after this many days.
    review_retention_days: float = 30.0

    def __post_init__(self) -> None:
        names = [d.name for d in self.deployments]
        if not names:
            raise InvalidArgument("deployments: at least one deployment is needed")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InvalidArgument(f"deployments: {', '.join(duplicated)} declared twice")
        if self.stable not in names:
            raise InvalidArgument(f"stable: {self.stable!r} is not a declared deployment ({', '.join(names)})")
        if self.candidate is not None:
            if self.candidate.name not in names:
                raise InvalidArgument(
                    f"candidate.name: {self.candidate.name!r} is not a declared deployment ({', '.join(names)})"
                )
            if self.candidate.name == self.stable:
                raise InvalidArgument(f"candidate.name: {self.stable!r} is already the stable deployment")
        _number("grace_seconds", self.grace_seconds, 0.0, 30 * 86400.0)
        _number("review_retention_days", self.review_retention_days, 0.001, 3650.0)

    def deployment(self, name: str) -> DeploymentSpec:
        for spec in self.deployments:
            if spec.name == name:
                return spec
        raise KeyError(name)


def for_models(models: tuple[str, ...], backend: str, compute_type: str) -> RolloutConfig:
    """The deployments of ``voxrelay serve --model A --model B``: one per model, the first stable."""
    specs: list[DeploymentSpec] = []
    for model in models:
        name = model if NAME.match(model) else re.sub(r"[^A-Za-z0-9._-]", "-", Path(model).name)[:63] or "model"
        while name in {s.name for s in specs}:
            name = f"{name}-2"[:63]
        specs.append(DeploymentSpec(name=name, model=model, backend=backend, compute_type=compute_type))
    return RolloutConfig(deployments=tuple(specs), stable=specs[0].name)


# Reading a file.


def _only(where: str, data: Any, allowed: set[str]) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{where}: must be a mapping of settings")
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise InvalidArgument(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(allowed))})")
    return dict(data)


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def spec_from_dict(name: str, data: Any, defaults: DeploymentSpec | None = None) -> DeploymentSpec:
    """A deployment from its mapping in a file (``defaults``: the server's backend and compute type)."""
    where = f"deployments.{name}"
    raw = _only(where, data, _names(DeploymentSpec) - {"name"})
    try:
        options = DecodeOverrides(**_only(f"{where}.options", raw.pop("options", None), _names(DecodeOverrides)))
        review = ReviewPolicy(**_only(f"{where}.review", raw.pop("review", None), _names(ReviewPolicy)))
        base = defaults or DeploymentSpec(name=name)
        return replace(base, name=name, options=options, review=review, **raw)
    except InvalidArgument as err:
        message = err.message if err.message.startswith(("deployment ", where)) else f"{where}: {err.message}"
        raise InvalidArgument(message) from None


def analysis_from_dict(data: Any) -> AnalysisSettings:
    raw = _only("analysis", data, _names(AnalysisSettings))
    thresholds = Thresholds(**_only("analysis.thresholds", raw.pop("thresholds", None), _names(Thresholds)))
    if "steps" in raw:
        raw["steps"] = check_steps("analysis.steps", raw["steps"])
    return AnalysisSettings(thresholds=thresholds, **raw)


def config_from_dict(data: Any, defaults: DeploymentSpec | None = None) -> RolloutConfig:
    raw = _only("deployments file", data, _names(RolloutConfig))
    declared = raw.pop("deployments", None)
    if not isinstance(declared, Mapping) or not declared:
        raise InvalidArgument(
            "deployments: must map each deployment's name to its settings, e.g. tiny: {model: tiny.en}"
        )
    specs = tuple(spec_from_dict(check_name("deployments", str(n)), d, defaults) for n, d in declared.items())
    stable = raw.pop("stable", specs[0].name)
    candidate = raw.pop("candidate", None)
    if candidate is not None:
        candidate = CandidateSpec(**_only("candidate", candidate, _names(CandidateSpec)))
    analysis = analysis_from_dict(raw.pop("analysis", None))
    return RolloutConfig(deployments=specs, stable=stable, analysis=analysis, candidate=candidate, **raw)


def load_config(path: str, defaults: DeploymentSpec | None = None) -> RolloutConfig:
    """Read a deployments file (YAML); every problem is one line naming the file and the setting."""
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - PyYAML comes with the cloud extra
        from voxrelay.errors import MissingDependency

        raise MissingDependency("--deployments", "pyyaml", "cloud") from err
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidArgument(f"--deployments: cannot read {path}: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", err)
        raise InvalidArgument(f"--deployments: {path}{where} is not valid YAML: {problem}") from None
    try:
        return config_from_dict(data, defaults)
    except InvalidArgument as err:
        raise InvalidArgument(f"--deployments: {path}: {err.message}") from None
    except TypeError as err:  # a value of the wrong shape for a dataclass field
        raise InvalidArgument(f"--deployments: {path}: {err}") from None


def spec_to_dict(spec: DeploymentSpec) -> dict[str, Any]:
    """A deployment as a file would declare it (defaults left out)."""
    out: dict[str, Any] = {"model": spec.model}
    if spec.backend != "faster-whisper":
        out["backend"] = spec.backend
    if spec.version:
        out["version"] = spec.version
    if spec.compute_type != "int8":
        out["compute_type"] = spec.compute_type
    if spec.options.as_dict():
        out["options"] = spec.options.as_dict()
    if spec.automation is not Automation.FULL:
        out["automation"] = spec.automation.value
    if spec.review != ReviewPolicy():
        out["review"] = {f.name: getattr(spec.review, f.name) for f in fields(spec.review)}
    return out

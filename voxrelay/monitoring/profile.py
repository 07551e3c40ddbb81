"""The reference profile of a model deployment: what its features look like on known-good audio.

A profile is a small JSON file (a few tens of KB), versioned by its ``format`` and ``version`` fields,
made by ``voxrelay profile`` or learned from a deployment's first segments. Per feature it keeps:

- continuous: a sorted sample of at most 256 quantiles (for KS and Wasserstein), the interior edges of
  10 equal-frequency bins and the share of the reference in each (for PSI), and a scale (the
  interquartile range) that makes Wasserstein distances comparable across features;
- rate: the share of segments where it is 1;
- categorical: each category's share.

A profile names the model it was made with (name and content version): a server refuses a profile
made for another model, saying which one it was made for. Its ``scope`` says who compares traffic with
it: ``server`` (a recognizer's model deployment) or ``edge`` (an edge's own input, made by ``voxrelay
profile --edge``; its model is the edge's VAD); each side refuses the other's profiles.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxrelay.errors import InvalidArgument
from voxrelay.monitoring.features import BY_NAME, CATEGORICAL, CONTINUOUS, EDGE_BY_NAME, RATE, Feature

FORMAT = "voxrelay-reference-profile"
VERSION = 1
SAMPLE_SIZE = 256
BINS = 10
MIN_SEGMENTS = 20
OTHER = "(other)"
SCOPES = ("server", "edge")


def feature_table(scope: str) -> Mapping[str, Feature]:
    """The features a profile of ``scope`` may hold."""
    return EDGE_BY_NAME if scope == "edge" else BY_NAME


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    backend: str = ""


@dataclass(frozen=True)
class FeatureReference:
    kind: str
    n: int
    sample: tuple[float, ...] = ()
    edges: tuple[float, ...] = ()
    proportions: tuple[float, ...] = ()
    scale: float = 0.0
    rate: float = 0.0
    categories: tuple[str, ...] = ()

    @property
    def median(self) -> float:
        if self.kind == CONTINUOUS:
            return float(np.median(self.sample))
        if self.kind == RATE:
            return self.rate
        return max(self.proportions) if self.proportions else math.nan

    def describe(self) -> str:
        """The reference in a few characters, for tables."""
        if self.kind == CONTINUOUS:
            q = np.quantile(np.asarray(self.sample), (0.1, 0.5, 0.9))
            return f"median {q[1]:.3g} (p10 {q[0]:.3g}, p90 {q[2]:.3g})"
        if self.kind == RATE:
            return f"{self.rate:.1%}"
        pairs = sorted(zip(self.proportions, self.categories, strict=True), reverse=True)[:3]
        return ", ".join(f"{c} {p:.0%}" for p, c in pairs if c != OTHER or p > 0)


@dataclass(frozen=True)
class ReferenceProfile:
    model: ModelRef
    features: Mapping[str, FeatureReference]
    source: str  # "manifest", "folder", "batch", "learned"
    origin: str = ""  # the path it was made from, or "first N segments"
    segments: int = 0
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    scope: str = "server"

    def check_model(self, name: str, version: str, where: str = "profile") -> None:
        """Refuse a profile made for another model."""
        if self.model.version and version and self.model.version != version:
            raise InvalidArgument(
                f"{where}: made for model {self.model.name} (version {self.model.version}), but this server serves "
                f"{name} (version {version}); make a profile for it with `voxrelay profile --model {name}`"
            )
        if not self.model.version and self.model.name != name:
            raise InvalidArgument(f"{where}: made for model {self.model.name}, not {name}")

    def to_json(self) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for name, ref in self.features.items():
            entry: dict[str, Any] = {"kind": ref.kind, "n": ref.n}
            if ref.kind == CONTINUOUS:
                entry.update(
                    sample=[round(v, 6) for v in ref.sample],
                    edges=[round(v, 6) for v in ref.edges],
                    proportions=[round(v, 6) for v in ref.proportions],
                    scale=round(ref.scale, 6),
                )
            elif ref.kind == RATE:
                entry["rate"] = round(ref.rate, 6)
            else:
                entry["categories"] = dict(zip(ref.categories, (round(p, 6) for p in ref.proportions), strict=True))
            features[name] = entry
        return {
            "format": FORMAT,
            "version": VERSION,
            "scope": self.scope,
            "model": {"name": self.model.name, "version": self.model.version, "backend": self.model.backend},
            "source": self.source,
            "origin": self.origin,
            "segments": self.segments,
            "created": self.created,
            "features": features,
        }

    def save(self, path: str | Path) -> Path:
        """Write the profile atomically (a temporary file renamed into place)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".profile-", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=1)
            f.write("\n")
        os.replace(tmp, target)
        return target


def _continuous(values: np.ndarray) -> FeatureReference:
    values = np.sort(values.astype(np.float64))
    quantiles = (np.arange(SAMPLE_SIZE) + 0.5) / SAMPLE_SIZE
    sample = np.quantile(values, quantiles) if values.size > SAMPLE_SIZE else values
    edges = np.unique(np.quantile(values, np.arange(1, BINS) / BINS))
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)
    q1, q3 = np.quantile(values, (0.25, 0.75))
    scale = float(q3 - q1) or float(np.std(values)) or 1.0
    return FeatureReference(
        CONTINUOUS,
        int(values.size),
        sample=tuple(float(v) for v in sample),
        edges=tuple(float(v) for v in edges),
        proportions=tuple(float(c) / values.size for c in counts),
        scale=scale,
    )


def build_profile(
    values: Mapping[str, Iterable[float | str]],
    model: ModelRef,
    source: str,
    origin: str,
    segments: int,
    scope: str = "server",
) -> ReferenceProfile:
    """A profile from each feature's reference values (features with fewer than 20 values are left out)."""
    features: dict[str, FeatureReference] = {}
    table = feature_table(scope)
    for name, raw in values.items():
        feature = table[name]
        items = list(raw)
        if len(items) < MIN_SEGMENTS:
            continue
        if feature.kind == CONTINUOUS:
            features[name] = _continuous(np.asarray(items, dtype=np.float64))
        elif feature.kind == RATE:
            features[name] = FeatureReference(RATE, len(items), rate=float(np.mean(np.asarray(items, dtype=float))))
        else:
            counts = Counter(str(v) for v in items)
            categories = [c for c, _ in counts.most_common(7)]
            shares = [counts[c] / len(items) for c in categories]
            categories.append(OTHER)
            shares.append(1.0 - sum(shares))
            features[name] = FeatureReference(
                CATEGORICAL, len(items), proportions=tuple(shares), categories=tuple(categories)
            )
    return ReferenceProfile(model, features, source, origin, segments, scope=scope)


# -- reading -------------------------------------------------------------------------------------


def _need(where: str, data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise InvalidArgument(f"{where}.{key}: missing")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidArgument(f"{where}.{key}: expected {names}, found {type(value).__name__} {value!r:.40}")
    return value


def _numbers(where: str, values: Any, n: int | None = None) -> tuple[float, ...]:
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise InvalidArgument(f"{where}: expected a list of finite numbers")
    if n is not None and len(values) != n:
        raise InvalidArgument(f"{where}: expected {n} numbers, found {len(values)}")
    return tuple(float(v) for v in values)


def _feature(where: str, data: Any) -> FeatureReference:
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where}: expected an object")
    kind = _need(where, data, "kind", str)
    n = _need(where, data, "n", int)
    if n < 1:
        raise InvalidArgument(f"{where}.n: {n} must be at least 1")
    if kind == CONTINUOUS:
        sample = _numbers(f"{where}.sample", _need(where, data, "sample", list))
        if not sample or list(sample) != sorted(sample):
            raise InvalidArgument(f"{where}.sample: expected a non-empty sorted list of numbers")
        edges = _numbers(f"{where}.edges", _need(where, data, "edges", list))
        if list(edges) != sorted(edges):
            raise InvalidArgument(f"{where}.edges: expected increasing numbers")
        proportions = _numbers(f"{where}.proportions", _need(where, data, "proportions", list), len(edges) + 1)
        if abs(sum(proportions) - 1.0) > 1e-3 or min(proportions) < 0:
            raise InvalidArgument(f"{where}.proportions: expected shares that add up to 1")
        scale = float(_need(where, data, "scale", (int, float)))
        if not scale > 0:
            raise InvalidArgument(f"{where}.scale: {scale} must be positive")
        return FeatureReference(kind, n, sample=sample, edges=edges, proportions=proportions, scale=scale)
    if kind == RATE:
        rate = float(_need(where, data, "rate", (int, float)))
        if not 0 <= rate <= 1:
            raise InvalidArgument(f"{where}.rate: {rate} is not a share between 0 and 1")
        return FeatureReference(kind, n, rate=rate)
    if kind == CATEGORICAL:
        categories = _need(where, data, "categories", dict)
        shares = _numbers(f"{where}.categories", list(categories.values()))
        if not categories or abs(sum(shares) - 1.0) > 1e-3:
            raise InvalidArgument(f"{where}.categories: expected shares that add up to 1")
        return FeatureReference(kind, n, proportions=shares, categories=tuple(str(c) for c in categories))
    raise InvalidArgument(f"{where}.kind: {kind!r} is not one of {CONTINUOUS}, {RATE}, {CATEGORICAL}")


def _check_scope(where: str, found: Any, scope: str) -> None:
    if found not in SCOPES:
        raise InvalidArgument(f"{where}.scope: {found!r} is not one of {', '.join(SCOPES)}")
    if found == scope:
        return
    if found == "edge":
        raise InvalidArgument(
            f"{where}.scope: an edge input profile (made by `voxrelay profile --edge`) cannot be a recognizer's "
            "reference; give it to the edge (`voxrelay transcribe/listen --drift-profile`) and make the "
            "recognizer's with `voxrelay profile` (without --edge)"
        )
    raise InvalidArgument(
        f"{where}.scope: a recognizer's profile (made by `voxrelay profile` for a model) cannot be an edge's "
        "reference; give it to `voxrelay serve --profile` and make the edge's with `voxrelay profile --edge`"
    )


def parse_profile(data: Any, where: str = "profile", scope: str = "server") -> ReferenceProfile:
    """A profile of ``scope`` (a profile of the other scope is refused, saying what it is for)."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"{where}: expected a JSON object")
    if data.get("format") != FORMAT:
        raise InvalidArgument(f"{where}.format: expected {FORMAT!r}, found {data.get('format')!r}: not a profile")
    version = _need(where, data, "version", int)
    if version != VERSION:
        raise InvalidArgument(f"{where}.version: {version} is not supported (this voxrelay reads version {VERSION})")
    found = data.get("scope", "server")  # profiles written before edge profiles existed are the server's
    _check_scope(where, found, scope)
    table = feature_table(scope)
    model = _need(where, data, "model", dict)
    ref = ModelRef(
        _need(f"{where}.model", model, "name", str),
        _need(f"{where}.model", model, "version", str),
        str(model.get("backend", "")),
    )
    features_data = _need(where, data, "features", dict)
    features = {}
    for name, entry in features_data.items():
        spec = table.get(name)
        if spec is None:
            raise InvalidArgument(f"{where}.features.{name}: not a known feature ({', '.join(table)})")
        feature = _feature(f"{where}.features.{name}", entry)
        if feature.kind != spec.kind:
            raise InvalidArgument(f"{where}.features.{name}.kind: expected {spec.kind}, found {feature.kind}")
        features[name] = feature
    return ReferenceProfile(
        ref,
        features,
        source=str(data.get("source", "")),
        origin=str(data.get("origin", "")),
        segments=int(data.get("segments", 0) or 0),
        created=str(data.get("created", "")),
        scope=scope,
    )


def load_profile(path: str | Path, scope: str = "server") -> ReferenceProfile:
    """Read and check a profile file; any problem is one InvalidArgument naming the file and the field."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidArgument(f"{where}: cannot read the profile: {err.strerror or err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"{where}: not JSON (line {err.lineno}, column {err.colno}: {err.msg})") from err
    try:
        return parse_profile(data, scope=scope)
    except InvalidArgument as err:
        raise InvalidArgument(f"{where}: {err.message}") from err

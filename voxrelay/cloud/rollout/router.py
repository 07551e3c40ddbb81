"""Which deployment serves a session, and which segments a shadow also hears: stable hashes.

A device's *bucket* is the SHA-256 of its id, salted with the candidate's name, reduced to 0..9999; a
canary at ``w`` % serves the devices whose bucket is below ``w × 100``. The same device therefore stays
on the same side for as long as the rollout holds still, across sessions and replicas (every replica
computes the same hash), and raising the weight only ever moves devices from the stable to the
candidate. A new candidate salts differently, so it does not always get the same few devices first.
A session re-reads the route only between segments: a segment finishes on the deployment it started on.

Shadow mirroring is decided per segment in the same way, from the segment's idempotency key: a resent
segment is mirrored (or not) exactly as it was the first time.
"""

from __future__ import annotations

import hashlib

from voxrelay.cloud.rollout.state import Phase, Role, RolloutState

BUCKETS = 10_000


def bucket(key: str, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def route(state: RolloutState, device: str) -> tuple[str, Role]:
    """The deployment (and its role) that serves ``device`` under ``state``."""
    candidate = state.candidate
    if state.phase is Phase.CANARY and candidate is not None and bucket(device, candidate) < state.weight * 100:
        return candidate, Role.CANARY
    return state.stable, Role.STABLE


def mirrored(state: RolloutState, segment_key: str) -> bool:
    """Whether the shadow candidate also recognises this segment."""
    if state.phase is not Phase.SHADOW or state.candidate is None:
        return False
    return bucket(segment_key, f"mirror:{state.candidate}") < state.mirror_percent * 100


def devices_in_buckets(salt: str, count: int, below: float = 100.0, above: float = 0.0) -> list[str]:
    """``count`` device ids whose canary bucket (salted with the candidate's name) is in [``above``,
    ``below``) percent: served by a canary of that name from weight ``below`` up, by the stable up to
    ``above`` (for rehearsing a rollout with chosen sides)."""
    found: list[str] = []
    i = 0
    while len(found) < count:
        name = f"dev-{salt}-{i}"
        if above <= bucket(name, salt) / 100 < below:
            found.append(name)
        i += 1
    return found

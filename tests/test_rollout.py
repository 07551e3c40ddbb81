"""Rollouts on a real recognizer over loopback, with the real tiny.en (stable) and multilingual base
(candidate) models and real speech: shadow with disagreement WER, a canary ramped by its analysis and
promoted, a broken candidate rolled back by itself, a blue-green switch under 8 paced streams, the Admin
service's refusals, and a shadow's model at background CPU priority.

The analysis runs when the test calls ``tick()`` (its own interval is set to an hour), so every step
is driven by the traffic the test sends, never by the clock.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import ServerThread
from tests.rollout_helpers import ADMIN_TOKEN, DEVICE_TOKEN, session, utterances, wait_for
from voxrelay.cloud.rollout.analysis import Verdict
from voxrelay.cloud.rollout.config import (
    AnalysisSettings,
    CandidateSpec,
    DecodeOverrides,
    DeploymentSpec,
    RolloutConfig,
    Thresholds,
)
from voxrelay.cloud.rollout.router import devices_in_buckets as devices
from voxrelay.cloud.settings import ServerSettings
from voxrelay.protos import admin_grpc, admin_pb

pytestmark = pytest.mark.slow

# base decodes about 2.5× slower than tiny.en on a CPU: the latency check allows for it here.
THRESHOLDS = Thresholds(latency_p95_ratio=6.0)
ANALYSIS = AnalysisSettings(
    interval_seconds=3600, min_samples=3, failure_limit=1, promote_after=1, steps=(5, 50, 100), thresholds=THRESHOLDS
)
TINY = DeploymentSpec(name="tiny", model="tiny.en")
BASE = DeploymentSpec(name="base", model="base", options=DecodeOverrides(language="en"))
# A deliberately broken candidate: base forced to decode English speech as Japanese.
BROKEN = DeploymentSpec(name="base-ja", model="base", options=DecodeOverrides(language="ja"))
ADMIN = [("authorization", f"Bearer {ADMIN_TOKEN}")]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("tokens")
    (folder / "admin.txt").write_text(f"{ADMIN_TOKEN} alice\n")
    (folder / "devices.txt").write_text(f"{DEVICE_TOKEN} kitchen\n")
    return {"admin": str(folder / "admin.txt"), "devices": str(folder / "devices.txt")}


@pytest.fixture(scope="module")
def speech(speech_dir: Path, english_utterances: list[dict[str, Any]]) -> list[Any]:
    return utterances(speech_dir, english_utterances, 8)


def start(
    tmp_path: Path,
    tokens: dict[str, str],
    lent: dict[str, Any],
    config: RolloutConfig,
    **settings: Any,
) -> ServerThread:
    server_settings = ServerSettings(
        port=0,
        admin_token_file=tokens["admin"],
        data_dir=str(tmp_path / "data"),
        max_client_streams=64,
        max_client_queued_work_seconds=120.0,
        **settings,
    )
    return ServerThread(server_settings, lent, rollout=config)


def admin(server: ServerThread) -> admin_grpc.AdminStub:
    return admin_grpc.AdminStub(grpc.insecure_channel(server.address))


def tick(server: ServerThread) -> Any:
    return server.call(server.server.core.rollout.tick())


def audit(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "data" / "audit.jsonl").read_text().splitlines()]


def test_a_shadow_is_compared_and_recorded_and_never_changes_a_result(
    tmp_path: Path,
    tokens: dict[str, str],
    engines: dict[str, Any],
    base_engine: Any,
    server: ServerThread,
    speech: list[Any],
) -> None:
    # What tiny.en alone answers (the shared fixture server, no rollout).
    alone = [r.text for r in session(server.address, "dev-alone", speech[:6])]
    config = RolloutConfig(
        deployments=(TINY, BASE),
        stable="tiny",
        candidate=CandidateSpec("base", "shadow", 100),
        analysis=ANALYSIS,
    )
    shadowed = start(tmp_path, tokens, {"tiny": engines["tiny.en"], "base": base_engine}, config)
    try:
        results = session(shadowed.address, "dev-1", speech[:6])
        assert [r.text for r in results] == alone  # the shadow changed nothing
        assert {(r.deployment, r.slot) for r in results} == {("tiny", "stable")}
        controller = shadowed.server.core.rollout
        wait_for(lambda: controller.deployments["base"].counters.shadow_compared == 6, what="6 shadow comparisons")
        registry = shadowed.server.core.metrics.registry
        assert registry.get_sample_value("voxrelay_shadow_mirror_percent", {"deployment": "base"}) == 100
        info = {
            "deployment": "base",
            "model": "base",
            "version": base_engine.model.version,
            "backend": "faster-whisper",
            "role": "shadow",
            "automation": "full",
        }
        assert registry.get_sample_value("voxrelay_deployment_info", info) == 1
        analysed = tick(shadowed)
        checks = {c.check: c for c in analysed.result.checks}
        disagreement = checks["disagreement_wer"]
        assert disagreement.verdict is Verdict.PASS, analysed.result.describe()
        assert disagreement.candidate is not None and 0.0 <= disagreement.candidate < 0.35
        assert disagreement.samples[0] == 6
        gauge = registry.get_sample_value("voxrelay_shadow_disagreement_wer", {"deployment": "base"})
        assert gauge == pytest.approx(disagreement.candidate)
        assert (
            registry.get_sample_value("voxrelay_shadow_segments_total", {"deployment": "base", "outcome": "compared"})
            == 6
        )
        # A passing shadow moves on to the first canary step (promote_after 1, auto_promote).
        status = admin(shadowed).GetStatus(admin_pb.StatusRequest(), metadata=ADMIN, timeout=30)
        assert status.analysis.result == "pass"
        assert status.phase == "canary" and status.candidate == "base" and status.weight == 5
        assert registry.get_sample_value("voxrelay_shadow_mirror_percent", {"deployment": "base"}) == 0
    finally:
        shadowed.stop(close_engines=False)


def test_a_canary_ramps_5_50_100_on_passing_analysis_then_a_broken_candidate_is_rolled_back(
    tmp_path: Path, tokens: dict[str, str], engines: dict[str, Any], base_engine: Any, speech: list[Any]
) -> None:
    config = RolloutConfig(deployments=(TINY, BASE, BROKEN), stable="tiny", analysis=ANALYSIS, grace_seconds=600)
    lent = {"tiny": engines["tiny.en"], "base": base_engine, "base-ja": base_engine}
    running = start(tmp_path, tokens, lent, config)
    stub = admin(running)
    try:
        reply = stub.Canary(admin_pb.CanaryRequest(name="base", reason="try base"), metadata=ADMIN, timeout=30)
        assert reply.changes == ["base: idle → canary at 5% of devices (steps 5 → 50 → 100 %)"]
        near = devices("base", below=5, count=2)  # served by the canary from 5 %
        mid = devices("base", below=50, count=2, above=5)  # from 50 %
        far = devices("base", count=2, above=50)  # by the stable until promotion

        def traffic(tag: str) -> dict[str, set[str]]:
            seen: dict[str, set[str]] = {}
            for device in near + mid + far:
                for r in session(running.address, device, speech[:2], session_id=tag):
                    seen.setdefault(device, set()).add(f"{r.deployment}/{r.slot}")
            return seen

        seen = traffic("at5")
        assert all(seen[d] == {"base/canary"} for d in near), seen
        assert all(seen[d] == {"tiny/stable"} for d in mid + far), seen
        analysed = tick(running)
        assert analysed.result.verdict is Verdict.PASS, analysed.result.describe()
        status = stub.GetStatus(admin_pb.StatusRequest(), metadata=ADMIN, timeout=30)
        assert status.phase == "canary" and status.weight == 50

        seen = traffic("at50")
        assert all(seen[d] == {"base/canary"} for d in near + mid), seen
        assert all(seen[d] == {"tiny/stable"} for d in far), seen
        assert tick(running).result.verdict is Verdict.PASS
        status = stub.GetStatus(admin_pb.StatusRequest(), metadata=ADMIN, timeout=30)
        assert status.phase == "steady" and status.stable == "base" and status.previous == "tiny"
        seen = traffic("promoted")
        assert all(v == {"base/stable"} for v in seen.values()), seen

        # A broken candidate (base forced to Japanese) as a canary: its first window fails.
        stub.Canary(admin_pb.CanaryRequest(name="base-ja", steps=[50, 100]), metadata=ADMIN, timeout=30)
        broken_side = devices("base-ja", below=50, count=3)
        stable_side = devices("base-ja", count=3, above=50)
        for device in broken_side + stable_side:
            for r in session(running.address, device, speech[:2], session_id="broken"):
                assert r.deployment == ("base-ja" if device in broken_side else "base")
        analysed = tick(running)
        assert analysed.result.verdict is Verdict.FAIL
        failed = {c.check for c in analysed.result.failed}
        assert "avg_logprob" in failed, analysed.result.describe()
        status = stub.GetStatus(admin_pb.StatusRequest(), metadata=ADMIN, timeout=30)
        assert status.phase == "steady" and status.stable == "base" and not status.candidate
        for device in broken_side:
            assert {r.deployment for r in session(running.address, device, speech[:1], session_id="after")} == {"base"}

        entries = audit(tmp_path)
        actions = [(e["who"], e["action"]) for e in entries]
        assert actions == [
            ("alice", "canary"),
            ("voxrelay (analysis)", "auto-step"),
            ("voxrelay (analysis)", "auto-promote"),
            ("alice", "canary"),
            ("voxrelay (analysis)", "auto-rollback"),
        ]
        rollback = entries[-1]
        assert "avg_logprob fail" in rollback["why"]
        assert any(c["check"] == "avg_logprob" and c["result"] == "fail" for c in rollback["figures"]["checks"])
        assert entries[0]["why"] == "try base" and entries[0]["time"].endswith("+00:00")
        registry = running.server.core.metrics.registry
        assert registry.get_sample_value("voxrelay_analysis_result", {"check": "avg_logprob", "result": "fail"}) == 1
        assert registry.get_sample_value("voxrelay_analysis_result", {"check": "overall", "result": "fail"}) == 1
        assert registry.get_sample_value("voxrelay_canary_weight", {"deployment": "base-ja"}) == 0
        assert registry.get_sample_value("voxrelay_rollout_decisions_total", {"action": "auto-rollback"}) == 1
    finally:
        running.stop(close_engines=False)


def test_too_little_traffic_is_inconclusive_and_changes_nothing(
    tmp_path: Path, tokens: dict[str, str], engines: dict[str, Any], base_engine: Any, speech: list[Any]
) -> None:
    config = RolloutConfig(
        deployments=(TINY, BASE),
        stable="tiny",
        candidate=CandidateSpec("base", "canary"),
        analysis=AnalysisSettings(interval_seconds=3600, min_samples=50, steps=(5, 100), thresholds=THRESHOLDS),
    )
    running = start(tmp_path, tokens, {"tiny": engines["tiny.en"], "base": base_engine}, config)
    try:
        for device in [*devices("base", below=5, count=1), "dev-x"]:
            session(running.address, device, speech[:2])
        analysed = tick(running)
        assert analysed.result.verdict is Verdict.INCONCLUSIVE
        st = running.server.core.rollout.state
        assert st.weight == 5 and st.passes == 0 and st.failures == 0
    finally:
        running.stop(close_engines=False)


def test_a_blue_green_switch_under_8_paced_streams_gives_every_segment_exactly_one_result(
    tmp_path: Path, tokens: dict[str, str], engines: dict[str, Any], speech: list[Any]
) -> None:
    # Two full deployments (the same weights, decoded differently) and an atomic switch between them.
    blue = DeploymentSpec(name="blue", model="tiny.en")
    green = DeploymentSpec(name="green", model="tiny.en", options=DecodeOverrides(beam_size=1))
    config = RolloutConfig(deployments=(blue, green), stable="blue", analysis=ANALYSIS, grace_seconds=600)
    tiny = engines["tiny.en"]
    running = start(tmp_path, tokens, {"blue": tiny, "green": tiny}, config)
    stub = admin(running)
    results: dict[int, list[Any]] = {}
    starts: dict[str, float] = {}
    lock = threading.Lock()

    def stream(n: int) -> None:
        import grpc as g

        from tests.rollout_helpers import requests
        from voxrelay.protos import pb_grpc

        audios = [speech[(n + i) % len(speech)] for i in range(4)]

        def timed() -> Any:
            for request in requests(f"stream-{n}", "bg", audios, pace=1.0):
                if request.WhichOneof("message") == "start":
                    with lock:
                        starts[request.start.segment_id] = time.monotonic()
                yield request

        out = []
        with g.insecure_channel(running.address) as channel:
            for response in pb_grpc.RecognizerStub(channel).Stream(timed(), timeout=300):
                assert response.WhichOneof("message") != "error", response.error
                if response.WhichOneof("message") == "result":
                    out.append(response.result)
        results[n] = out

    threads = [threading.Thread(target=stream, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(4.0)
    asked = time.monotonic()
    reply = stub.Promote(
        admin_pb.PromoteRequest(name="green", switch=True, reason="blue-green"), metadata=ADMIN, timeout=30
    )
    switched = time.monotonic()
    assert reply.changes[0] == "blue-green switch: blue → green at once"
    for t in threads:
        t.join(300)
    ids = [r.segment_id for out in results.values() for r in out]
    expected = [f"stream-{n}/bg/{i}" for n in range(8) for i in range(4)]
    assert sorted(ids) == sorted(expected)  # none lost, none duplicated
    for n, out in results.items():
        order = [r.deployment for r in out]
        assert order == sorted(order), f"stream {n} went back from green to blue: {order}"  # blue… then green…
        for r in out:
            started = starts[r.segment_id]
            if started < asked - 0.5:
                assert r.deployment == "blue", (r.segment_id, order)
            if started > switched + 0.5:
                assert r.deployment == "green", (r.segment_id, order)
    assert {r.deployment for out in results.values() for r in out} == {"blue", "green"}
    # The old deployment stays loaded: a rollback is a pointer swap.
    back = stub.Rollback(admin_pb.RollbackRequest(reason="swap back"), metadata=ADMIN, timeout=30)
    assert back.changes == ["pointer swap: green → blue; green: stable → idle"]
    assert back.status.stable == "blue"
    running.stop(close_engines=False)


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        (
            lambda s, m: s.Canary(admin_pb.CanaryRequest(name="nope"), metadata=m),
            "NOT_FOUND",
            "deployment 'nope' is not loaded here",
        ),
        (
            lambda s, m: s.Canary(admin_pb.CanaryRequest(name="base", weight=150), metadata=m),
            "INVALID_ARGUMENT",
            "weight: 150 is outside 0..100",
        ),
        (
            lambda s, m: s.Shadow(admin_pb.ShadowRequest(name="base", mirror_percent=-5), metadata=m),
            "INVALID_ARGUMENT",
            "mirror_percent: -5 is outside 0..100",
        ),
        (
            lambda s, m: s.Promote(admin_pb.PromoteRequest(), metadata=m),
            "FAILED_PRECONDITION",
            "no candidate to promote",
        ),
        (
            lambda s, m: s.Rollback(admin_pb.RollbackRequest(), metadata=m),
            "FAILED_PRECONDITION",
            "nothing to roll back",
        ),
        (
            lambda s, m: s.RemoveDeployment(admin_pb.RemoveDeploymentRequest(name="tiny"), metadata=m),
            "FAILED_PRECONDITION",
            "stable one and cannot be removed",
        ),
        (
            lambda s, m: s.AddDeployment(
                admin_pb.AddDeploymentRequest(
                    spec=admin_pb.DeploymentSpec(
                        name="x", model="tiny.en", options=admin_pb.DecodeOverrides(language="de")
                    )
                ),
                metadata=m,
            ),
            "INVALID_ARGUMENT",
            "language 'de' needs a multilingual model",
        ),
        (
            lambda s, m: s.Canary(admin_pb.CanaryRequest(name="base"), metadata=None),
            "UNAUTHENTICATED",
            "needs an admin token",
        ),
        (
            lambda s, m: s.Canary(
                admin_pb.CanaryRequest(name="base"), metadata=[("authorization", f"Bearer {DEVICE_TOKEN}")]
            ),
            "UNAUTHENTICATED",
            "a device token is not an admin token",
        ),
        (
            lambda s, m: s.GetStatus(
                admin_pb.StatusRequest(), metadata=[("authorization", "Bearer wrong-token-0123456789")]
            ),
            "UNAUTHENTICATED",
            "not accepted",
        ),
    ],
)
def test_the_admin_service_refuses_bad_input_with_one_line_and_changes_nothing(
    tmp_path: Path,
    tokens: dict[str, str],
    engines: dict[str, Any],
    base_engine: Any,
    call: Any,
    code: str,
    message: str,
) -> None:
    config = RolloutConfig(deployments=(TINY, BASE), stable="tiny", analysis=ANALYSIS)
    running = start(
        tmp_path, tokens, {"tiny": engines["tiny.en"], "base": base_engine}, config, auth_token_file=tokens["devices"]
    )
    try:
        stub = admin(running)
        before = running.server.core.rollout.state
        with pytest.raises(grpc.RpcError) as info:
            call(stub, ADMIN)
        assert info.value.code().name == code
        assert message in info.value.details() and "\n" not in info.value.details()
        assert running.server.core.rollout.state == before
        assert not (tmp_path / "data" / "audit.jsonl").exists()
    finally:
        running.stop(close_engines=False)


def test_a_shadow_model_runs_at_background_cpu_priority_and_back_when_promoted() -> None:  # SCHED_IDLE, nice 19
    from voxrelay.cloud.rollout.engines import EngineOptions, build_engine

    holder = build_engine(DeploymentSpec(name="bg", model="tiny.en"), EngineOptions(), background=True)
    try:
        assert holder.threads, "the runtime's threads were not found"
        assert holder.engine.on_idle is not None  # a deployment's engine gives memory back when idle

        def nices() -> set[int]:
            out = set()
            for tid in holder.threads:
                try:
                    out.add(os.getpriority(os.PRIO_PROCESS, tid))
                except ProcessLookupError:
                    continue
            return out

        def policies() -> set[int]:
            out = set()
            for tid in holder.threads:
                try:
                    out.add(os.sched_getscheduler(tid))
                except ProcessLookupError:
                    continue
            return out

        normal = os.getpriority(os.PRIO_PROCESS, os.getpid())  # the process's own nice value (0 unless run niced)
        assert nices() == {19} and policies() == {os.SCHED_IDLE}
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == normal  # only the model's threads
        assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER
        if os.geteuid() == 0:
            assert holder.promote() and nices() == {normal} and policies() == {os.SCHED_OTHER}
            holder.demote()
            assert nices() == {19} and policies() == {os.SCHED_IDLE}
    finally:
        holder.engine.close()

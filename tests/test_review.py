"""Humans in the loop on a real recognizer: degrees of automation, the review queue, `voxrelay review`
in a terminal, the live WER from corrections, the export `voxrelay eval` reads, and privacy."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import soundfile

from tests.conftest import ROOT, ServerThread
from tests.rollout_helpers import ADMIN_TOKEN, session, utterances
from voxrelay.cloud.rollout.config import (
    AnalysisSettings,
    Automation,
    DeploymentSpec,
    ReviewPolicy,
    RolloutConfig,
)
from voxrelay.cloud.settings import ServerSettings
from voxrelay.review.policy import Confidence, decide

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def speech(speech_dir: Path, english_utterances: list[dict[str, Any]]) -> list[Any]:
    return utterances(speech_dir, english_utterances, 6)


@pytest.fixture()
def admin_file(tmp_path: Path) -> str:
    path = tmp_path / "admin.txt"
    path.write_text(f"{ADMIN_TOKEN} rita\n")
    return str(path)


def serve(tmp_path: Path, admin_file: str, engines: dict[str, Any], *specs: DeploymentSpec) -> ServerThread:
    config = RolloutConfig(deployments=specs, stable=specs[0].name, analysis=AnalysisSettings(interval_seconds=3600))
    settings = ServerSettings(port=0, admin_token_file=admin_file, data_dir=str(tmp_path / "data"))
    return ServerThread(settings, {s.name: engines["tiny.en"] for s in specs}, rollout=config)


def voxrelay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "voxrelay", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_partial_automation_marks_low_confidence_results_and_queues_them_with_their_audio(
    tmp_path: Path,
    admin_file: str,
    engines: dict[str, Any],
    server: ServerThread,
    speech: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A bound between the most and the least confident of these utterances (tiny.en alone, first).
    logprobs = sorted(r.avg_logprob for r in session(server.address, "dev-first", speech))
    assert logprobs[0] < logprobs[-1]
    strict = ReviewPolicy(min_avg_logprob=(logprobs[0] + logprobs[-1]) / 2, max_estimated_wer=1.0)
    spec = DeploymentSpec(name="tiny", model="tiny.en", automation=Automation.PARTIAL, review=strict)
    running = serve(tmp_path, admin_file, engines, spec)
    caplog.set_level(logging.DEBUG)
    try:
        results = session(running.address, "dev-r", speech)
        queue = running.server.core.rollout.review
        assert queue is not None
        queue.flush()
        flagged = [r for r in results if r.needs_review]
        assert flagged and len(flagged) < len(results)
        for r in results:
            expected = decide(
                Automation.PARTIAL, strict, Confidence(r.text, r.avg_logprob, r.no_speech_prob, r.compression_ratio)
            )
            assert r.needs_review == (expected is not None) and bool(r.review_id) == r.needs_review
        for r in flagged:
            item = queue.get(r.review_id, with_audio=True)
            assert item.model_text == r.text and item.segment_id == r.segment_id and item.reason == "needs_review"
            assert item.audio and soundfile.info(__import__("io").BytesIO(item.audio)).samplerate == 16000
            assert any("avg_logprob" in w for w in item.why)
        # Privacy: no transcript text in any log line.
        for r in results:
            assert all(r.text not in rec.getMessage() for rec in caplog.records if r.text)
    finally:
        running.stop(close_engines=False)


def test_assistance_queues_every_result_and_shadow_automation_keeps_the_text_from_clients(
    tmp_path: Path, admin_file: str, engines: dict[str, Any], speech: list[Any]
) -> None:
    helper = DeploymentSpec(name="helper", model="tiny.en", automation=Automation.ASSISTANCE)
    people = DeploymentSpec(name="people", model="tiny.en", automation=Automation.SHADOW)
    running = serve(tmp_path, admin_file, engines, helper, people)
    try:
        suggested = session(running.address, "dev-a", speech[:3])
        assert all(r.needs_review and r.text for r in suggested)
        import grpc

        from tests.rollout_helpers import requests
        from voxrelay.protos import pb_grpc

        with grpc.insecure_channel(running.address) as channel:
            stub = pb_grpc.RecognizerStub(channel)
            reqs = list(requests("dev-p", "s", speech[:2]))
            reqs[0].config.options.model = "people"  # a client that names its deployment
            withheld = [m.result for m in stub.Stream(iter(reqs), timeout=120) if m.WhichOneof("message") == "result"]
        assert all(r.needs_review and r.text == "" and not r.words and r.deployment == "people" for r in withheld)
        queue = running.server.core.rollout.review
        assert queue is not None
        queue.flush()
        reasons = {(i.deployment, i.reason) for i in queue.items(limit=100)}
        assert reasons == {("helper", "suggestion"), ("people", "transcribe")}
        hidden = [i for i in queue.items(limit=100) if i.deployment == "people"]
        assert all(i.model_text == "" for i in hidden)  # reviewers type what they hear
    finally:
        running.stop(close_engines=False)


def test_a_fully_automated_deployment_stores_nothing(
    tmp_path: Path, admin_file: str, engines: dict[str, Any], speech: list[Any]
) -> None:
    running = serve(tmp_path, admin_file, engines, DeploymentSpec(name="tiny", model="tiny.en"))
    try:
        results = session(running.address, "dev-f", speech[:2])
        assert not any(r.needs_review for r in results)
        assert not (tmp_path / "data" / "review.sqlite3").exists()
    finally:
        running.stop(close_engines=False)


def test_voxrelay_review_in_a_terminal_and_the_live_wer_and_an_export_that_eval_reads(
    tmp_path: Path, admin_file: str, engines: dict[str, Any], speech: list[Any]
) -> None:
    spec = DeploymentSpec(name="tiny", model="tiny.en", automation=Automation.ASSISTANCE)
    running = serve(tmp_path, admin_file, engines, spec)
    common = ["--server", running.address, "--admin-token-file", admin_file]
    try:
        results = session(running.address, "dev-c", speech[:3])
        running.server.core.rollout.review.flush()  # type: ignore[union-attr]
        listed = voxrelay("review", "list", *common)
        assert listed.returncode == 0, listed.stderr
        for r in results:
            assert r.review_id in listed.stdout
        assert "3 pending" in listed.stdout
        first, second, third = (r.review_id for r in results)
        wav = tmp_path / "seg.wav"
        played = voxrelay("review", "play", first, "--output", str(wav), *common)
        assert played.returncode == 0, played.stderr
        assert soundfile.info(str(wav)).duration == pytest.approx(results[0].timings.audio_seconds, abs=0.01)

        registry = running.server.core.metrics.registry
        assert registry.get_sample_value("voxrelay_review_wer", {"deployment": "tiny"}) is None
        accepted = voxrelay("review", "accept", first, *common)
        assert accepted.returncode == 0 and f"{first}: accepted by rita" in accepted.stdout
        assert registry.get_sample_value("voxrelay_review_wer", {"deployment": "tiny"}) == 0.0
        right = "completely different words spoken here"
        corrected = voxrelay("review", "correct", second, right, *common)
        assert corrected.returncode == 0 and f"{second}: corrected by rita: {right}" in corrected.stdout
        wer = registry.get_sample_value("voxrelay_review_wer", {"deployment": "tiny"})
        assert wer is not None and wer > 0.2  # the live WER moved with the correction
        assert registry.get_sample_value("voxrelay_review_redo_ratio", {"deployment": "tiny"}) == 0.5
        skipped = voxrelay("review", "skip", third, *common)
        assert skipped.returncode == 0 and "stays in the queue" in skipped.stdout

        bad = voxrelay("review", "accept", "nope", *common)
        assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
        assert "review item 'nope' does not exist" in bad.stderr
        no_token = voxrelay("review", "list", "--server", running.address, env={"VOXRELAY_ADMIN_TOKEN": ""})
        assert no_token.returncode == 2 and "an admin token is needed" in no_token.stderr

        out = tmp_path / "export"
        exported = voxrelay("review", "export", "-o", str(out), *common)
        assert exported.returncode == 0, exported.stderr
        rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert [r["text"] for r in rows] == [results[0].text, right]
        assert all(r["text_kind"] == "human_reference" and (out / r["audio"]).is_file() for r in rows)
        report = tmp_path / "report.json"
        evaluated = voxrelay("eval", str(out / "manifest.jsonl"), "--server", running.address, "--report", str(report))
        assert evaluated.returncode == 0, evaluated.stderr[-2000:]
        scored = json.loads(report.read_text())
        assert scored["asr"]["utterances"] == 2
    finally:
        running.stop(close_engines=False)

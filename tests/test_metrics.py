"""Per-stage Prometheus metrics: a real server and edge on fresh registries, scraped over HTTP and read
back from the metrics file after real transcriptions."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from voxrelay.cloud.metrics import CloudMetrics, error_reason
from voxrelay.cloud.settings import ServerSettings
from voxrelay.edge.agent import VadSettings
from voxrelay.edge.events import AudioBlock
from voxrelay.edge.link.uplink import UplinkSettings
from voxrelay.edge.metrics import EdgeMetrics, judged_non_speech, stage_breakdown
from voxrelay.edge.results import SegmentResult
from voxrelay.edge.transcribe import transcribe
from voxrelay.errors import InvalidArgument, LimitExceeded, Unavailable
from voxrelay.exposition import ExportSettings, MetricsExporter, new_registry
from voxrelay.protos import pb, pb_grpc

SAMPLE = ROOT / "samples" / "voxrelay-sample.wav"

EDGE_NAMES = {
    "voxrelay_vad_segments_total",
    "voxrelay_vad_segment_duration_seconds",
    "voxrelay_vad_speech_ratio",
    "voxrelay_edge_input_level_dbfs",
    "voxrelay_e2e_latency_seconds",
}
SERVER_NAMES = {
    "voxrelay_asr_segments_total",
    "voxrelay_asr_inference_seconds",
    "voxrelay_asr_queue_wait_seconds",
    "voxrelay_asr_empty_transcripts_total",
    "voxrelay_asr_avg_logprob",
    "voxrelay_asr_no_speech_prob",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition text, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def names(text: str) -> set[str]:
    return {f.name + ("_total" if f.type == "counter" else "") for f in text_string_to_metric_families(text)}


class MeteredServer:
    """A real recognizer on loopback recording into ``metrics``, on its own event loop thread."""

    def __init__(self, engines: Any, metrics: CloudMetrics) -> None:
        from voxrelay.cloud.server import create_server

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        coro = create_server(ServerSettings(port=0, max_segment_seconds=40.0), engines, metrics)
        self.server, port = asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)
        self.address = f"127.0.0.1:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.server.stop(5), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture()
def metered(engines: Any) -> Iterator[tuple[MeteredServer, CloudMetrics]]:
    metrics = CloudMetrics(new_registry())
    running = MeteredServer(engines, metrics)
    yield running, metrics
    running.stop()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.mark.slow
def test_a_transcription_fills_the_endpoint_and_the_metrics_file(
    metered: tuple[MeteredServer, CloudMetrics], speech_dir: Path, tmp_path: Path
) -> None:
    server, cloud = metered
    files = [str(speech_dir / "asr/jfk_inaugural_1961.wav"), str(SAMPLE)]
    edge = EdgeMetrics(new_registry())
    metrics_file = tmp_path / "edge.prom"
    uplink = UplinkSettings(server=server.address, device_id="metrics-test")
    out = io.StringIO()
    with (
        MetricsExporter(cloud.registry, ExportSettings(port=0)) as endpoint,
        MetricsExporter(edge.registry, ExportSettings(textfile=str(metrics_file))),
    ):
        status = asyncio.run(transcribe(files, uplink, vad=VadSettings(vad="webrtc"), stdout=out, metrics=edge))
        assert status == 0
        assert endpoint.port is not None
        scraped = scrape(endpoint.port)
    written = metrics_file.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["edge.prom"]  # written through a renamed temporary

    assert names(scraped) >= SERVER_NAMES, sorted(names(scraped))
    assert names(written) >= EDGE_NAMES, sorted(names(written))
    s, e = samples(scraped), samples(written)
    model = {"model": "tiny.en", "backend": "faster-whisper"}

    segments = value(e, "voxrelay_vad_segments_total", vad="webrtc")
    assert segments >= 2  # the sample alone has two sentences
    assert value(s, "voxrelay_asr_segments_total", **model, slot="stable") == segments
    assert value(e, "voxrelay_edge_results_total", status="ok") == segments
    assert value(e, "voxrelay_edge_results_total", status="error") == 0
    # With the 0.5 s endpoint, a 0.15 s noise burst 0.5 s after the JFK recording's last word is a segment
    # of its own (the 1.8 s hangover used to bridge it into the sentence): the recognizer finds no speech
    # in it, and the edge counts it as a likely VAD false positive. Nothing else is empty.
    empty = value(s, "voxrelay_asr_empty_transcripts_total", **model)
    assert empty <= 1
    assert value(e, "voxrelay_vad_false_positive_segments_total", vad="webrtc") == empty
    assert value(e, "voxrelay_edge_empty_results_total") == empty
    for name in ("voxrelay_asr_inference_seconds", "voxrelay_asr_queue_wait_seconds"):
        assert value(s, f"{name}_count", **model) == segments
    assert value(s, "voxrelay_asr_inference_seconds_sum", **model) > 0
    # Whisper's confidence is recorded for the segments with text (no phrase, no no_speech_prob).
    spoken = segments - empty
    assert value(s, "voxrelay_asr_no_speech_prob_count", **model) == spoken
    assert value(s, "voxrelay_asr_avg_logprob_count", **model) == spoken
    # Clear speech: no segment's confidence falls below -1, and no_speech_prob stays under 0.6.
    assert value(s, "voxrelay_asr_avg_logprob_bucket", **model, le="-1.0") == 0
    assert value(s, "voxrelay_asr_no_speech_prob_bucket", **model, le="0.6") == spoken
    assert value(s, "voxrelay_asr_detected_language_total", model="tiny.en", language="en") == segments
    assert value(s, "voxrelay_asr_in_flight", model="tiny.en") == 0
    assert value(s, "voxrelay_asr_queue_depth", model="tiny.en") == 0
    assert value(s, "process_resident_memory_bytes") > 0

    # What the edge sent is what the server received, and what the segments last.
    sent = value(e, "voxrelay_edge_sent_audio_seconds_total")
    assert value(s, "voxrelay_asr_audio_received_seconds_total") == pytest.approx(sent, abs=1e-6)
    assert value(e, "voxrelay_vad_segment_duration_seconds_sum", vad="webrtc") == pytest.approx(sent, abs=1e-3)
    assert value(e, "voxrelay_vad_segment_duration_seconds_count", vad="webrtc") == segments
    read = value(e, "voxrelay_edge_audio_seconds_total")
    assert read == pytest.approx(11.0 + 18.12, abs=0.05) and sent < read

    ratio = value(e, "voxrelay_vad_speech_ratio", vad="webrtc")
    assert 0.2 < ratio < 1.0
    speech = value(e, "voxrelay_vad_speech_frames_total", vad="webrtc")
    assert 0 < speech < value(e, "voxrelay_vad_frames_total", vad="webrtc")
    assert -120.0 <= value(e, "voxrelay_edge_input_level_dbfs") < 0.0
    assert value(e, "voxrelay_edge_clipping_ratio") == 0.0

    # End to end: one latency per result, and its stages add up to it.
    assert value(e, "voxrelay_e2e_latency_seconds_count") == segments
    total = value(e, "voxrelay_e2e_latency_seconds_sum")
    stages = {
        st: value(e, "voxrelay_e2e_stage_seconds_sum", stage=st)
        for st in ("endpoint", "edge_queue", "network", "server_queue", "inference")
    }
    assert total > 0 and sum(stages.values()) == pytest.approx(total, rel=1e-6)
    assert stages["inference"] == pytest.approx(value(s, "voxrelay_asr_inference_seconds_sum", **model), rel=1e-4)
    assert value(e, "voxrelay_edge_segments_in_flight") == 0
    assert value(e, "voxrelay_edge_queue_depth") == 0


@pytest.mark.slow
def test_refused_requests_are_counted_by_code_and_reason_and_the_server_goes_on(
    metered: tuple[MeteredServer, CloudMetrics],
) -> None:
    server, cloud = metered
    audio = (np.sin(np.arange(16000) / 5.0) * 3000).astype("<i2").tobytes()
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as info:
                stub.Recognize(pb.RecognizeRequest(format=pb.AudioFormat(sample_rate_hz=1000), audio=audio))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError):
            stub.Recognize(pb.RecognizeRequest(options=pb.RecognitionOptions(model="large-v9"), audio=audio))
        first = pb.StreamRequest(start=pb.SegmentStart(segment_id="x"))
        with pytest.raises(grpc.RpcError):
            list(stub.Stream(iter([first]), timeout=30))
        result = stub.Recognize(pb.RecognizeRequest(audio=audio), timeout=60)  # still serving
    assert result.model.name == "tiny.en"
    get = cloud.registry.get_sample_value
    invalid = "voxrelay_asr_invalid_inputs_total"
    assert get(invalid, {"code": "INVALID_ARGUMENT", "reason": "format.sample_rate_hz"}) == 2
    assert get(invalid, {"code": "NOT_FOUND", "reason": "options.model"}) == 1
    assert get(invalid, {"code": "INVALID_ARGUMENT", "reason": "start"}) == 1
    assert get("voxrelay_asr_audio_received_seconds_total") == pytest.approx(1.0)


def test_error_reasons_are_short_fixed_labels() -> None:
    assert error_reason(InvalidArgument("config.format.sample_rate_hz: 1000 is not supported")) == (
        "config.format.sample_rate_hz"
    )
    assert error_reason(InvalidArgument("end: segment 'a' has no audio")) == "end"
    # A message that starts with client data does not become a label.
    assert error_reason(LimitExceeded("segment 'dev/s/1': 61.0 s of audio is over the limit")) == "limit_exceeded"
    assert error_reason(Unavailable("the server is draining; retry later")) == "unavailable"


def test_input_level_clipping_and_capture_losses() -> None:
    edge = EdgeMetrics(CollectorRegistry())
    session = edge.session("webrtc")
    get = edge.registry.get_sample_value
    full = np.full(8000, 32767, dtype=np.int16)
    full[::2] = -32768
    session.block(AudioBlock(full, 0.0))
    assert get("voxrelay_edge_clipping_ratio") == 1.0
    assert get("voxrelay_edge_input_level_dbfs") == pytest.approx(0.0, abs=1e-3)
    # Half a second of a quarter-scale square wave follows: the last second is half clipped, and its
    # mean square is (1 + 1/16) / 2 of full scale.
    quarter = np.full(8000, 8192, dtype=np.int16)
    quarter[::2] = -8192
    session.block(AudioBlock(quarter, 0.5))
    assert get("voxrelay_edge_clipping_ratio") == pytest.approx(0.5)
    level = 10 * np.log10((32767.5**2 / 32768**2 + 1 / 16) / 2)
    assert get("voxrelay_edge_input_level_dbfs") == pytest.approx(level, abs=1e-3)
    # A full second of digital silence pushes the rest out of the window.
    session.block(AudioBlock(np.zeros(16000, dtype=np.int16), 1.0))
    assert get("voxrelay_edge_input_level_dbfs") == -120.0
    assert get("voxrelay_edge_clipping_ratio") == 0.0
    assert get("voxrelay_edge_clipped_samples_total") == 8000
    assert get("voxrelay_edge_audio_seconds_total") == pytest.approx(2.0)

    edge.capture(overflows=2, dropped_frames=480)
    edge.capture(overflows=3, dropped_frames=480)
    assert get("voxrelay_edge_input_overflows_total") == 3
    assert get("voxrelay_edge_dropped_frames_total") == 480


def result(**fields: Any) -> SegmentResult:
    base: dict[str, Any] = {"segment_id": "d/s/0", "sequence": 0, "text": "hello", "start": 0.0, "end": 1.0}
    return SegmentResult(**{**base, **fields})


def test_stage_breakdown_and_the_vad_false_positive_proxy() -> None:
    # 0.5 s from the end of speech to the close, then 1 s from the close to the result.
    r = result(latency_seconds=1.5, close_to_result_seconds=1.0, queue_wait_seconds=0.25, inference_seconds=0.5)
    stages = stage_breakdown(r, edge_queue=0.125)
    assert stages == {
        "endpoint": 0.5,
        "edge_queue": 0.125,
        "network": 0.125,
        "server_queue": 0.25,
        "inference": 0.5,
    }
    assert sum(stages.values()) == r.latency_seconds
    assert judged_non_speech(result(text=""))
    assert judged_non_speech(result(no_speech_prob=0.9, avg_logprob=-1.2))
    assert not judged_non_speech(result(no_speech_prob=0.9, avg_logprob=-0.3))
    assert not judged_non_speech(result(text="", error="INTERNAL: boom"))


def test_registries_are_fresh_per_owner() -> None:
    a, b = EdgeMetrics(CollectorRegistry()), EdgeMetrics(CollectorRegistry())  # no duplicate-name clash
    a.session("webrtc").block(AudioBlock(np.zeros(160, dtype=np.int16), 0.0))
    assert a.registry.get_sample_value("voxrelay_edge_audio_seconds_total") == pytest.approx(0.01)
    assert b.registry.get_sample_value("voxrelay_edge_audio_seconds_total") == 0.0


def voxrelay(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxrelay", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.mark.slow
def test_transcribe_metrics_file_from_the_command_line(server: Any, tmp_path: Path) -> None:
    target = tmp_path / "voxrelay.prom"
    run = voxrelay(
        "transcribe", "--server", server.address, "--vad", "webrtc", "--metrics-file", str(target), str(SAMPLE)
    )
    assert run.returncode == 0, run.stderr
    text = target.read_text()
    assert names(text) >= EDGE_NAMES
    found = samples(text)
    assert value(found, "voxrelay_vad_segments_total", vad="webrtc") == 2
    assert value(found, "process_cpu_seconds_total") > 0


def test_bad_metrics_options_are_one_clear_line(tmp_path: Path) -> None:
    run = voxrelay("transcribe", "--metrics-file", str(tmp_path / "no" / "such" / "x.prom"), str(SAMPLE))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "--metrics-file" in run.stderr and "does not exist" in run.stderr
    run = voxrelay("serve", "--metrics-port", "70000")
    assert run.returncode == 2 and "metrics_port" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
def test_serve_exposes_metrics_on_its_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "voxrelay", "serve", "--port", "0", "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        listening = proc.stdout.readline()
        line = proc.stdout.readline().strip()
        assert listening.startswith("listening on ") and line.startswith("metrics on http://127.0.0.1:"), line
        text = scrape(int(line.rsplit(":", 1)[1].split("/")[0]))
        found = samples(text)
        assert value(found, "voxrelay_asr_active_streams") == 0
        assert value(found, "voxrelay_asr_queue_depth", model="tiny.en") == 0
        assert value(found, "voxrelay_asr_empty_transcripts_total", model="tiny.en", backend="faster-whisper") == 0
        assert value(found, "process_resident_memory_bytes") > 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err

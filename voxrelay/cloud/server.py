"""Building, running and stopping the recognizer server (``voxrelay serve`` and the embedded one)."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from voxrelay.cloud import parallelism, security
from voxrelay.cloud.backends import load_backend
from voxrelay.cloud.core import ServiceCore
from voxrelay.cloud.engine import InferenceEngine
from voxrelay.cloud.fronts import Front
from voxrelay.cloud.handlers import add_recognizer, receive_limits
from voxrelay.cloud.memory import trim_when_idle, tune_memory
from voxrelay.cloud.metrics import CloudMetrics
from voxrelay.cloud.rollout.admin import AdminService, AdminTokenInterceptor, add_admin
from voxrelay.cloud.rollout.config import RolloutConfig
from voxrelay.cloud.rollout.setup import admin_tokens, build_rollout
from voxrelay.cloud.service import RecognizerService
from voxrelay.cloud.settings import ServerSettings
from voxrelay.cloud.watch import ServedModels
from voxrelay.errors import MissingDependency, UnknownModel, VoxrelayError
from voxrelay.exposition import ExportSettings, MetricsExporter, exported, new_registry
from voxrelay.monitoring.board import Board
from voxrelay.monitoring.live import LivePage
from voxrelay.monitoring.monitor import Monitor
from voxrelay.monitoring.thresholds import load_thresholds
from voxrelay.protos import ADMIN_SERVICE_NAME, SERVICE_NAME
from voxrelay.review.metrics import ReviewCollector

if TYPE_CHECKING:  # the review page brings aiohttp: imported only when --review-port asks for it
    from voxrelay.review.page import ReviewPage

log = logging.getLogger(__name__)
# What a server runs, said once at start; the command line shows it at its default level.
STARTUP_LOGGER = "voxrelay.startup"
startup_log = logging.getLogger(STARTUP_LOGGER)


def load_engines(settings: ServerSettings) -> dict[str, InferenceEngine]:
    """Load every model of ``settings`` once (blocking: seconds per model)."""
    engines: dict[str, InferenceEngine] = {}
    chosen = parallelism.pick(settings.inference_workers, settings.cpu_threads, settings.device)
    log.info("inference: %s, batches of up to %d", chosen.describe(), settings.max_batch)
    for name in settings.models:
        began = time.perf_counter()
        backend = load_backend(
            name,
            settings.backend,
            device=settings.device,
            compute_type=settings.compute_type,
            num_workers=chosen.workers,
            cpu_threads=chosen.cpu_threads,
        )
        log.info(
            "loaded %s (%s, version %s, %s) in %.1f s",
            name,
            backend.model.backend,
            backend.model.version,
            backend.model.compute,
            time.perf_counter() - began,
        )
        engines[name] = InferenceEngine(
            backend,
            chosen.workers,
            max_batch=settings.max_batch,
            max_wait=settings.max_wait_ms / 1000,
            cpu_threads=chosen.cpu_threads,
        )
        trim_when_idle(engines[name])  # memory freed by a burst of work goes back once it is over
    return engines


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard one (every connection is a file); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as err:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, err)
    return int(soft)


def connection_limit(settings: ServerSettings, open_files: int) -> int:
    """max_connections, kept below the open-file limit (with room for the model, logs and metrics)."""
    room = max(16, open_files - 128)
    if settings.max_connections > room:
        log.warning(
            "max connections %d is above what the open-file limit (%d) allows; using %d",
            settings.max_connections,
            open_files,
            room,
        )
    return min(settings.max_connections, room)


def _channel_options(settings: ServerSettings, max_connections: int) -> list[tuple[str, int]]:
    # gRPC's limit is the largest message of the contract (a Recognize request); each method's own
    # bound is held by its deserializer (see handlers.receive_limits).
    largest = max(receive_limits(settings).values())
    return [
        ("grpc.max_receive_message_length", largest),
        ("grpc.so_reuseport", 0),
        ("grpc.max_allowed_incoming_connections", max_connections),
        ("grpc.max_connection_idle_ms", int(settings.connection_idle_seconds * 1000)),
        # No flow-control window growth (BDP probing): what a caller may push before the server reads it
        # stays at the 64 KiB HTTP/2 window per call, so refused or unread requests cost no memory.
        ("grpc.http2.bdp_probe", 0),
        ("grpc.server_handshake_timeout_ms", int(settings.handshake_timeout_seconds * 1000)),
        # HTTP/2 streams per connection: the server's streams and a Recognize call per slot.
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams + 64),
        # Ping clients so that a vanished one frees its stream; cut off clients that ping too often.
        ("grpc.keepalive_time_ms", int(settings.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", int(settings.min_client_ping_seconds * 1000)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.http2.max_pings_without_data", 0),
    ]


class RecognizerServer:
    """A started grpc.aio server with its core and health service; ``stop`` drains gracefully."""

    def __init__(
        self,
        server: grpc.aio.Server,
        core: ServiceCore,
        health_servicer: health.aio.HealthServicer,
        fronts: Sequence[Front] = (),
        review: ReviewPage | None = None,
    ):
        self.server = server
        self.core = core
        self.health = health_servicer
        self.fronts = tuple(fronts)
        self.review = review
        self._stopped = False

    def front(self, name: str) -> Front:
        """The started front called ``name`` (``http``, ``wyoming``)."""
        for front in self.fronts:
            if front.name == name:
                return front
        raise KeyError(name)

    async def stop(self, grace: float | None = None, close_engines: bool = True) -> None:
        """Stop accepting work, finish in-flight segments within ``grace`` seconds, then stop.
        ``close_engines`` False leaves the models loaded (engines the caller lent)."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.core.settings.grace_seconds if grace is None else grace
        began = time.perf_counter()
        await self.health.enter_graceful_shutdown()
        await self.core.drain(grace)
        remaining = max(0.5, grace - (time.perf_counter() - began))
        await asyncio.gather(*(front.stop(remaining) for front in self.fronts))
        remaining = max(0.5, grace - (time.perf_counter() - began))
        await self.server.stop(remaining)
        if self.review is not None:
            await self.review.stop()
        await self.core.rollout.close()
        if close_engines:
            await asyncio.to_thread(self.core.close)
        elif self.core.monitor is not None:
            await asyncio.to_thread(self.core.monitor.close)

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def create_server(
    settings: ServerSettings,
    engines: Mapping[str, InferenceEngine] | None = None,
    metrics: CloudMetrics | None = None,
    monitor: Monitor | None = None,
    rollout: RolloutConfig | None = None,
) -> tuple[RecognizerServer, int]:
    """Build and start the server; returns it and the port it is bound to (settings.port 0 picks one).

    ``metrics`` records on the caller's registry; without it the service gets a fresh registry of its own.
    ``monitor``: the drift monitor to use instead of the one the settings describe (it is started and
    closed with the service). ``engines``: models already loaded, by deployment (or model) name; the
    deployments (``rollout``, else the settings' deployments file, else one per model) load the rest.
    """
    tokens = security.token_set(settings)
    admins = admin_tokens(settings, tokens)
    metrics = metrics if metrics is not None else CloudMetrics(CollectorRegistry())
    controller = await build_rollout(settings, metrics.registry, engines, rollout)
    core = ServiceCore(settings, controller, metrics, tokens, monitor)
    metrics.registry.register(ReviewCollector(lambda: controller.review))
    limit = connection_limit(settings, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    server = grpc.aio.server(
        options=_channel_options(settings, limit),
        interceptors=[*security.interceptors(settings, tokens), AdminTokenInterceptor(admins, tokens)],
    )
    add_recognizer(RecognizerService(core), server, receive_limits(settings))
    add_admin(AdminService(controller, admins, settings.compute_type), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        from grpc_reflection.v1alpha import reflection

        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                ADMIN_SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
    port = security.bind(server, settings)
    fronts = await _start_fronts(core, tokens)
    review = None
    try:
        if settings.review_port is not None:
            from voxrelay.review.page import ReviewPage

            review = ReviewPage(controller, admins, core.metrics.registry)
            await review.start(settings.host, settings.review_port)
        await server.start()
    except BaseException:
        await asyncio.gather(*(front.stop(0.5) for front in fronts))
        if review is not None:
            await review.stop()
        raise
    controller.start()
    for name in ("", SERVICE_NAME, ADMIN_SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RecognizerServer(server, core, health_servicer, fronts, review), port


async def _start_fronts(core: ServiceCore, tokens: security.TokenSet | None) -> list[Front]:
    """Start the HTTP and Wyoming fronts the settings ask for (their libraries are imported only then)."""
    settings = core.settings
    fronts: list[Front] = []
    try:
        if settings.http_port is not None:
            try:
                from voxrelay.cloud.fronts.openai_http import OpenAIHttpFront
            except ImportError as err:
                raise MissingDependency("--http-port", err.name or "aiohttp", "cloud") from err
            http = OpenAIHttpFront(core, tokens)
            await http.start(settings.host, settings.http_port)
            fronts.append(http)
        if settings.wyoming_port is not None:
            try:
                from voxrelay.cloud.fronts.wyoming import WyomingFront
            except ImportError as err:
                raise MissingDependency("--wyoming-port", err.name or "wyoming", "cloud") from err
            wyoming = WyomingFront(core)
            await wyoming.start(settings.host, settings.wyoming_port)
            fronts.append(wyoming)
    except BaseException:
        await asyncio.gather(*(front.stop(0.5) for front in fronts))
        raise
    return fronts


async def _serve(settings: ServerSettings) -> None:
    registry = new_registry()
    export = ExportSettings(port=settings.metrics_port, host=settings.host)
    with exported(registry, export) as exporter:
        await _run(settings, CloudMetrics(registry), exporter)


def describe(server: RecognizerServer) -> str:
    """One line for an operator's log: the models, how inference runs, the limits, TLS and tokens."""
    core = server.core
    s = core.settings
    engines = core.engines
    stable = core.default_model
    names = [stable, *(n for n in engines if n != stable)] if stable in engines else list(engines)
    models = "; ".join(
        f"{name}: {m.name} version {m.version} on {m.backend} ({m.compute})"
        for name, m in ((n, engines[n].model) for n in names)
    )
    first = engines[names[0]] if names else None
    inference = "no engine"
    if first is not None:
        threads = first.cpu_threads or "default"
        inference = f"{first.workers} worker(s) x {threads} CPU thread(s), batches of up to {first.max_batch}"
    limits = (
        f"{s.max_concurrent_streams} streams ({s.max_client_streams} per client), {s.max_segment_seconds:g} s per "
        f"segment, {s.max_queued_audio_seconds:g} s queued audio, {s.max_queued_work_seconds:g} s queued work "
        f"({s.max_client_queued_work_seconds:g} s per client), {s.max_pending_segments} pending segments per stream, "
        f"{s.max_connections} connections"
    )
    tls = "off" if s.tls_cert is None else ("on, mutual (client certificates)" if s.tls_client_ca else "on")
    tokens = "off" if s.auth_token_file is None else "on"
    admin = "on" if s.admin_token_file is not None else "off"
    return (
        f"serving {models}; inference {inference}; limits {limits}; TLS {tls}; device tokens {tokens}; "
        f"admin tokens {admin}"
    )


async def _run(settings: ServerSettings, metrics: CloudMetrics, exporter: MetricsExporter | None) -> None:
    server, port = await create_server(settings, None, metrics)
    startup_log.info("%s", describe(server))
    print(f"listening on {settings.host}:{port}", flush=True)
    if exporter is not None:
        print(f"metrics on http://{settings.host}:{exporter.port}/metrics", flush=True)
    for front in server.fronts:
        scheme = "tcp" if front.name == "wyoming" else "http"
        print(f"{front.name} on {scheme}://{settings.host}:{front.port}", flush=True)
    if server.review is not None:
        print(f"review on http://{settings.host}:{server.review.port}/", flush=True)
    page = _start_page(settings, server)
    try:
        await _until_stopped(settings, server)
    finally:
        if page is not None:
            page.close()


def _start_page(settings: ServerSettings, server: RecognizerServer) -> LivePage | None:
    """The built-in live page, when ``--dashboard-port`` asks for it."""
    if settings.dashboard_port is None or server.core.monitor is None:
        return None
    thresholds = load_thresholds(settings.thresholds_file)
    board = Board(server.core.metrics.registry, server.core.monitor, thresholds, ServedModels(server.core))
    page = LivePage(board, settings.host, settings.dashboard_port).start()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"dashboard on http://{host}:{page.port}/", flush=True)
    return page


async def _until_stopped(settings: ServerSettings, server: RecognizerServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info(
        "stopping: open segments and in-flight calls may finish within %.1f s, new work is refused; "
        "press Ctrl-C again to stop now",
        settings.grace_seconds,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
    await server.stop()
    log.info("stopped")


def serve(settings: ServerSettings) -> int:
    """Run the server until SIGINT/SIGTERM; returns the exit status."""
    log.info("open-file limit: %d", raise_open_file_limit())
    log.info("memory: %s", ", ".join(tune_memory()) or "allocator settings from the environment")
    try:
        asyncio.run(_serve(settings))
    except UnknownModel:
        raise  # a usage error: the command line says so (exit 2)
    except VoxrelayError as err:
        print(f"voxrelay serve: {err.message}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        return 0
    return 0

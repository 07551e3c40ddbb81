"""Loading a deployment's model, and running a shadow's at background CPU priority.

Each deployment has an engine of its own (its own weights in memory, scheduler and workers). Two models
on the same cores compete for them, and the fair scheduler of one engine cannot hold back another's: a
shadow's inference would slow the stable's. So the native threads a model's runtime starts
(CTranslate2's workers and their OpenMP team) are found when it loads, and while the deployment is a
shadow they run under Linux's SCHED_IDLE policy (and nice 19): the kernel gives them the CPU only when
nothing else wants it, and takes it back the moment a stable thread wakes. Nice 19 alone is not enough
for a model's OpenMP team: each parallel region waits for its slowest thread, and a stable thread sharing
a core with a merely low-priority one can wait a scheduler tick for it at every region. The Python
threads that call into the model keep normal priority (they hold the GIL now and then; a starved GIL
holder would hold the stable back). Raising the priority back (a shadow promoted to canary) needs
CAP_SYS_NICE; without it the model is loaded again at normal priority.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from voxrelay.cloud import parallelism
from voxrelay.cloud.backends import load_backend
from voxrelay.cloud.backends.base import Backend, DecodeOptions
from voxrelay.cloud.engine import InferenceEngine
from voxrelay.cloud.memory import trim_when_idle
from voxrelay.cloud.rollout.config import DeploymentSpec
from voxrelay.cloud.settings import ServerSettings
from voxrelay.errors import InvalidArgument, VoxrelayError

log = logging.getLogger(__name__)

BACKGROUND_NICE = 19


def _tasks() -> set[int]:
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def _python_threads() -> set[int]:
    return {t.native_id for t in threading.enumerate() if t.native_id is not None}


def thread_cpu_seconds(threads: frozenset[int]) -> dict[int, float]:
    """CPU seconds (user + system) each of ``threads`` (Linux thread ids) has run; ended threads are left out."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out = {}
    for tid in threads:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[tid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _set_policy(tid: int, background: bool) -> None:
    """SCHED_IDLE for a background thread, SCHED_OTHER otherwise (where the platform has them)."""
    policy = getattr(os, "SCHED_IDLE" if background else "SCHED_OTHER", None)
    if policy is not None and hasattr(os, "sched_setscheduler"):
        os.sched_setscheduler(tid, policy, os.sched_param(0))


def set_background(threads: frozenset[int], background: bool) -> bool:
    """Run ``threads`` (Linux thread ids) at background priority (SCHED_IDLE, nice 19) or back at the
    process's own priority (its main thread's nice value: ``nice -n 5 voxrelay serve`` stays at 5); False
    if that is not permitted (raising the priority needs CAP_SYS_NICE)."""
    done = True
    normal = os.getpriority(os.PRIO_PROCESS, os.getpid())
    for tid in threads:
        try:
            if background:
                os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
                _set_policy(tid, True)
            else:
                _set_policy(tid, False)
                os.setpriority(os.PRIO_PROCESS, tid, normal)
        except ProcessLookupError:
            continue  # the thread ended
        except PermissionError:
            done = False
        except OSError as err:
            if err.errno in (errno.EPERM, errno.EACCES):
                done = False
    return done


@dataclass(frozen=True)
class EngineOptions:
    """How every deployment's engine runs: device, workers × CPU threads, batching."""

    device: str = "cpu"
    workers: int = 1
    cpu_threads: int = 0
    max_batch: int = 1
    max_wait: float = 0.0

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> EngineOptions:
        chosen = parallelism.pick(settings.inference_workers, settings.cpu_threads, settings.device)
        return cls(settings.device, chosen.workers, chosen.cpu_threads, settings.max_batch, settings.max_wait_ms / 1000)


@dataclass(frozen=True)
class LoadedModel:
    backend: Backend
    # The native threads its runtime started while loading and warming up.
    threads: frozenset[int]
    seconds: float


def _load(spec: DeploymentSpec, o: EngineOptions) -> LoadedModel:
    before = _tasks()
    began = time.perf_counter()
    backend = load_backend(
        spec.model,
        spec.backend,
        device=o.device,
        compute_type=spec.compute_type,
        num_workers=o.workers,
        cpu_threads=o.cpu_threads,
    )
    # One short inference starts the runtime's thread pool now, so its threads are found.
    with contextlib.suppress(VoxrelayError):
        backend.transcribe(np.zeros(8000, dtype=np.float32), DecodeOptions(beam_size=1, language="en"))
    seconds = time.perf_counter() - began
    threads = frozenset(_tasks() - before - _python_threads() - {threading.get_native_id()})
    return LoadedModel(backend, threads, seconds)


def load_model(spec: DeploymentSpec, options: EngineOptions, background: bool) -> LoadedModel:
    """Load ``spec``'s model (blocking) on a thread of its own, at background priority if asked, so that
    the runtime's threads inherit it."""
    outcome: Future[LoadedModel] = Future()

    def run() -> None:
        try:
            if background:  # the runtime's threads, started by this one, inherit its priority
                set_background(frozenset({threading.get_native_id()}), True)
            outcome.set_result(_load(spec, options))
        except BaseException as err:  # handed to the caller
            outcome.set_exception(err)

    thread = threading.Thread(target=run, name=f"voxrelay-load-{spec.name}", daemon=True)
    thread.start()
    thread.join()
    return outcome.result()


def check_loaded(spec: DeploymentSpec, backend: Backend) -> None:
    """Refuse weights of another version than the spec names, and options the model cannot decode."""
    model = backend.model
    if spec.version and model.version != spec.version:
        raise InvalidArgument(
            f"deployment {spec.name}: the weights of {spec.model} are version {model.version}, not {spec.version} "
            "as the deployment says; fix the version or the model"
        )
    language = spec.options.language
    if not model.multilingual and (language not in (None, "en") or spec.options.task == "translate"):
        what = f"language {language!r}" if language not in (None, "en") else "task translate"
        raise InvalidArgument(
            f"deployment {spec.name}: {what} needs a multilingual model; {spec.model} is English-only"
        )


class DeploymentEngine:
    """A deployment's engine and the priority its model's threads run at."""

    def __init__(
        self,
        spec: DeploymentSpec,
        engine: InferenceEngine,
        threads: frozenset[int],
        background: bool,
        owned: bool = True,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.threads = threads
        self.background = background
        # False for an engine the caller lent (already loaded): it closes it, the controller never does.
        self.owned = owned

    def demote(self) -> None:
        """Run the model's threads at background priority (always permitted)."""
        if not self.background and self.threads:
            set_background(self.threads, True)
            self.background = True

    def promote(self) -> bool:
        """Back to normal priority; False if not permitted (the caller loads the model again)."""
        if not self.background:
            return True
        if set_background(self.threads, False):
            self.background = False
            return True
        return False


def build_engine(spec: DeploymentSpec, options: EngineOptions, background: bool) -> DeploymentEngine:
    """Load, check and wrap ``spec``'s model (blocking: about a second for tiny.en or base on a CPU)."""
    loaded = load_model(spec, options, background)
    try:
        check_loaded(spec, loaded.backend)
    except VoxrelayError:
        loaded.backend.close()
        raise
    m = loaded.backend.model
    log.info(
        "deployment %s: loaded %s (%s, version %s, %s) in %.1f s%s",
        spec.name,
        spec.model,
        m.backend,
        m.version,
        m.compute,
        loaded.seconds,
        ", background priority" if background and loaded.threads else "",
    )
    engine = InferenceEngine(
        loaded.backend,
        options.workers,
        max_batch=options.max_batch,
        max_wait=options.max_wait,
        cpu_threads=options.cpu_threads,
    )
    trim_when_idle(engine)  # memory freed by a burst of work goes back once it is over
    return DeploymentEngine(spec, engine, loaded.threads, background)

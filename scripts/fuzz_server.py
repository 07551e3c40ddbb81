#!/usr/bin/env python3
"""Fuzz a real recognizer and watch that it never crashes and that its memory stays bounded.

    python scripts/fuzz_server.py                       # 10,000 hypothesis cases against `voxrelay serve`
    python scripts/fuzz_server.py --cases 500           # a quick run
    python scripts/fuzz_server.py --engine atheris --cases 20000   # coverage-guided raw bytes (pip install atheris)

hypothesis engine: a ``voxrelay serve`` process (tiny.en) is started on a loopback port; cases are
fuzzed Stream sessions, Recognize requests and raw bytes on every method path (see tests/fuzzing.py).
Every case must end with OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED or NOT_FOUND and a message; the
server must keep answering GetInfo and stay alive. A failing case is shrunk by hypothesis and printed.

atheris engine: the recognizer runs in this process with its cloud modules instrumented, and libFuzzer
mutates raw bytes sent to a method path chosen by the input, guided by the Python coverage they reach.

Both print the status codes seen, the resident memory (RSS) of the server over the run, and its growth
after warm-up (the first 10 % of the cases).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serveproc import start_serve  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Report:
    def __init__(self, total: int, pid: int) -> None:
        self.total = total
        self.pid = pid
        self.codes: Counter[tuple[str, str]] = Counter()
        self.cases = 0
        self.samples: list[tuple[int, float]] = [(0, rss_mib(pid))]
        self.began = time.perf_counter()
        self.every = max(1, total // 20)

    def add(self, kind: str, code: str) -> None:
        self.codes[(kind, code)] += 1
        self.cases += 1
        if self.cases % self.every == 0:
            self.samples.append((self.cases, rss_mib(self.pid)))
            elapsed = time.perf_counter() - self.began
            print(f"  {self.cases:6d} cases  {elapsed:6.0f} s  server RSS {self.samples[-1][1]:7.1f} MiB", flush=True)

    def print(self) -> None:
        elapsed = time.perf_counter() - self.began
        print(f"\n{self.cases} cases in {elapsed:.0f} s ({self.cases / max(elapsed, 1e-9):.0f}/s)")
        print("status codes by kind of case:")
        for (kind, code), n in sorted(self.codes.items()):
            print(f"  {kind:14s} {code:20s} {n:7d}")
        self.samples.append((self.cases, rss_mib(self.pid)))
        warm_at = max(1, self.total // 10)
        warm = next((rss for n, rss in self.samples if n >= warm_at), self.samples[-1][1])
        final = self.samples[-1][1]
        peak = max(rss for n, rss in self.samples if n >= warm_at) if self.cases >= warm_at else final
        print(
            f"server RSS: start {self.samples[0][1]:.1f} MiB, after warm-up ({warm_at} cases) {warm:.1f} MiB, "
            f"end {final:.1f} MiB, peak after warm-up {peak:.1f} MiB; growth after warm-up "
            f"{100 * (final - warm) / warm:+.1f} % (peak {100 * (peak - warm) / warm:+.1f} %)"
        )


def run_hypothesis(args: argparse.Namespace) -> int:
    import grpc
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from tests import fuzzing
    from voxrelay.protos import pb, pb_grpc

    proc, address = start_serve(*args.serve_arg)
    print(f"fuzzing voxrelay serve (pid {proc.pid}) at {address} with {args.cases} hypothesis cases")
    report = Report(args.cases, proc.pid)
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = pb_grpc.RecognizerStub(channel)
    # Recognize cases run the model when valid (about a second each on a small CPU), so fewer of them.
    cases = st.one_of(
        fuzzing.streams.map(lambda c: ("stream", c)),
        fuzzing.streams.map(lambda c: ("stream", c)),
        fuzzing.raw_cases.map(lambda c: ("raw", c)),
        fuzzing.raw_cases.map(lambda c: ("raw", c)),
        fuzzing.recognize_requests.map(lambda c: ("recognize", c)),
    )

    @settings(
        max_examples=args.cases,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def fuzz(case: tuple[str, object]) -> None:
        kind, body = case
        outcome = fuzzing.run_case(channel, kind, body)
        report.add(outcome.kind, outcome.code)
        fuzzing.check(outcome)
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        if report.cases % 100 == 0:
            assert stub.GetInfo(pb.GetInfoRequest(), timeout=30).models

    status = 0
    try:
        fuzz()
        assert stub.GetInfo(pb.GetInfoRequest(), timeout=30).models
        print("the server answered every case with an expected status and kept serving")
    except Exception as err:  # hypothesis has shrunk and printed the failing case
        print(f"FAILED: {type(err).__name__}: {err}")
        status = 1
    finally:
        report.print()
        channel.close()
        proc.terminate()
        proc.wait(60)
    return status


def run_atheris(args: argparse.Namespace) -> int:
    try:
        import atheris
    except ImportError:
        raise SystemExit("the atheris engine needs atheris: pip install atheris") from None
    with atheris.instrument_imports(include=["voxrelay"]):
        from voxrelay.cloud import handlers, security, service, session, wire  # noqa: F401
    import grpc

    from tests.conftest import ServerThread
    from voxrelay.cloud.server import load_engines
    from voxrelay.cloud.settings import ServerSettings
    from voxrelay.protos import SERVICE_NAME, pb, pb_grpc

    settings = ServerSettings(port=0, max_queued_audio_seconds=60)
    server = ServerThread(settings, load_engines(settings))
    channel = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = pb_grpc.RecognizerStub(channel)
    report = Report(args.cases, os.getpid())
    acceptable = {"OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "NOT_FOUND"}
    methods = ("Stream", "Recognize", "GetInfo")

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        method = methods[fdp.ConsumeIntInRange(0, 2)]
        messages = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400)) for _ in range(fdp.ConsumeIntInRange(1, 4))]
        path = f"/{SERVICE_NAME}/{method}"
        code = "OK"
        try:
            if method == "Stream":
                for _ in channel.stream_stream(path)(iter(messages), timeout=60):
                    pass
            else:
                channel.unary_unary(path)(messages[0], timeout=60)
        except grpc.RpcError as err:
            code = err.code().name  # type: ignore[attr-defined]
            if code not in acceptable or not err.details():  # type: ignore[attr-defined]
                raise AssertionError(f"{method}: {code}: {err.details()}") from None  # type: ignore[attr-defined]
        report.add(f"raw {method}", code)
        if report.cases % 200 == 0:
            assert stub.GetInfo(pb.GetInfoRequest(), timeout=30).models
        if report.cases == args.cases:  # libFuzzer exits the process right after the last run
            assert stub.GetInfo(pb.GetInfoRequest(), timeout=30).models
            print("the server answered every case with an expected status and kept serving")
            report.print()

    print(f"atheris: {args.cases} coverage-guided raw-bytes cases against an in-process recognizer")
    atheris.Setup([sys.argv[0], f"-runs={args.cases}", "-max_len=2048"], one_input)
    atheris.Fuzz()  # does not return: libFuzzer exits with 0, or reports the failing input and exits 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="cases to run (default %(default)s)")
    parser.add_argument("--engine", choices=("hypothesis", "atheris"), default="hypothesis")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `voxrelay serve` (repeat), e.g. --serve-arg=--max-queued-audio=30",
    )
    args = parser.parse_args()
    return run_hypothesis(args) if args.engine == "hypothesis" else run_atheris(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""`voxrelay deploy` as a real command against a real `voxrelay serve` on loopback: every verb run in its
own process, each printing what changed, and bad input refused with one line (exit 2, no traceback)
while the server goes on serving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.rollout_helpers import ADMIN_TOKEN

pytestmark = pytest.mark.slow

DEPLOYMENTS = """\
stable: tiny
deployments:
  tiny: {model: tiny.en}
  spare: {model: tiny.en, options: {beam_size: 2}}
analysis: {interval_seconds: 3600, steps: [5, 50, 100]}
"""


class Served:
    def __init__(self, proc: subprocess.Popen[str], address: str, admin_file: Path, data: Path) -> None:
        self.proc, self.address, self.admin_file, self.data = proc, address, admin_file, data

    def deploy(self, *args: str, token: bool = True) -> subprocess.CompletedProcess[str]:
        """``voxrelay deploy ARGS`` in a process of its own."""
        common = ["--server", self.address] + (["--admin-token-file", str(self.admin_file)] if token else [])
        return subprocess.run(
            [sys.executable, "-m", "voxrelay", "deploy", args[0], *common, *args[1:]],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
            env={**os.environ, "VOXRELAY_ADMIN_TOKEN": ""},
        )

    def ok(self, *args: str) -> str:
        done = self.deploy(*args)
        assert done.returncode == 0, f"deploy {' '.join(args)}: {done.stderr}"
        assert done.stderr == "", done.stderr
        return done.stdout

    def status(self) -> dict[str, Any]:
        return json.loads(self.ok("status", "--json"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("deploy-cli")
    (work / "deployments.yaml").write_text(DEPLOYMENTS)
    admin_file = work / "admin.txt"
    admin_file.write_text(f"{ADMIN_TOKEN} olga\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voxrelay",
            "serve",
            "--port",
            "0",
            "--deployments",
            str(work / "deployments.yaml"),
            "--admin-token-file",
            str(admin_file),
            "--data-dir",
            str(work / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=open(work / "serve.log", "w"),  # noqa: SIM115 - lives as long as the process
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise AssertionError(f"unexpected first line {line!r}; stderr: {(work / 'serve.log').read_text()[-2000:]}")
    try:
        yield Served(proc, line.removeprefix("listening on "), admin_file, work / "data")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    err = (work / "serve.log").read_text()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err


def roles(status: dict[str, Any]) -> dict[str, str]:
    return {d["spec"]["name"]: d["role"] for d in status["deployments"]}


def test_deploy_add_shadow_canary_promote_rollback_remove_each_print_what_changed(served: Served) -> None:
    before = served.ok("status")
    assert before.splitlines()[0] == "now: tiny serves everyone"
    assert "tiny" in before and "stable" in before and "tiny.en" in before

    added = served.ok("add", "green", "--model", "tiny.en", "--beam-size", "1", "--why", "greedy decoding")
    assert added.splitlines()[0].startswith("green: loaded tiny.en (faster-whisper, version ")
    assert "beam_size=1" in added.splitlines()[0] and added.splitlines()[0].endswith(", idle")
    assert added.splitlines()[-1] == "now: tiny serves everyone"
    status = served.status()
    assert roles(status) == {"tiny": "stable", "spare": "idle", "green": "idle"}
    (green,) = (d for d in status["deployments"] if d["spec"]["name"] == "green")
    assert green["spec"]["model"] == "tiny.en" and green["spec"]["options"] == {"beam_size": 1}

    shadowed = served.ok("shadow", "green", "--mirror-percent", "50")
    assert shadowed.splitlines()[0] == (
        "green: idle → shadow of tiny, 50% of segments mirrored (results recorded, never returned)"
    )
    assert shadowed.splitlines()[-1] == "now: tiny serves everyone; shadow green hears 50% of segments"
    assert roles(served.status())["green"] == "shadow"

    promoted = served.ok("promote", "--why", "the shadow agrees")
    assert promoted.splitlines()[-1] == "now: canary green at 5% of devices (steps 5 → 50 → 100), tiny the rest"
    stepped = served.ok("promote")
    assert stepped.splitlines()[-1] == "now: canary green at 50% of devices (steps 5 → 50 → 100), tiny the rest"
    by_hand = served.ok("canary", "green", "--weight", "25", "--why", "slower ramp")
    assert "25" in by_hand.splitlines()[0]
    assert by_hand.splitlines()[-1] == "now: canary green at 25% of devices (steps 5 → 50 → 100), tiny the rest"

    table = served.ok("status")
    assert table.splitlines()[0] == "now: canary green at 25% of devices (steps 5 → 50 → 100), tiny the rest"
    assert "analysis every 3600 s" in table
    assert "recent changes:" in table and "slower ramp" in table and "greedy decoding" in table

    rolled = served.ok("rollback", "--why", "customers report errors")
    assert rolled.splitlines() == ["green: canary 25% → idle; tiny serves everyone", "now: tiny serves everyone"]
    assert roles(served.status()) == {"tiny": "stable", "spare": "idle", "green": "idle"}

    removed = served.ok("remove", "green", "--why", "done with it")
    assert removed.splitlines() == ["green: unloaded", "now: tiny serves everyone"]
    assert roles(served.status()) == {"tiny": "stable", "spare": "idle"}

    audit = served.ok("audit", "-n", "50").splitlines()
    actions = [line.split(": ", 2)[1] for line in audit]
    # What each command did: promote made the shadow a canary, then stepped it.
    assert actions[-7:] == ["add", "shadow", "canary", "step", "canary", "rollback", "remove"], audit
    assert all(" olga: " in line for line in audit[-7:])
    assert audit[-1].endswith("— done with it")
    logged = [json.loads(line) for line in (served.data / "audit.jsonl").read_text().splitlines()]
    assert [e["action"] for e in logged][-7:] == actions[-7:]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("canary", "nope"), "deployment 'nope' is not loaded here"),
        (("shadow", "nope"), "deployment 'nope' is not loaded here"),
        (("remove", "nope"), "deployment 'nope' is not loaded here"),
        (("canary", "spare", "--weight", "150"), "weight: 150 is outside 0..100"),
        (("shadow", "spare", "--mirror-percent", "-5"), "mirror_percent: -5 is outside 0..100"),
        (("canary", "spare", "--steps", "5,500"), "outside 0..100"),
        (("canary", "tiny", "--weight", "50"), "'tiny' is the stable one already"),
        (("promote",), "no candidate to promote"),
        (("rollback",), "nothing to roll back"),
        (("remove", "tiny"), "stable one and cannot be removed"),
        (("add", "x", "--model", "tiny.en", "--language", "de"), "language 'de' needs a multilingual model"),
    ],
)
def test_deploy_refuses_bad_input_with_one_line_and_exit_2_and_the_server_goes_on(
    served: Served, args: tuple[str, ...], message: str
) -> None:
    before = served.status()
    done = served.deploy(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("voxrelay deploy: ") and message in done.stderr, done.stderr
    assert served.proc.poll() is None
    after = served.status()
    before.pop("recent", None)
    after.pop("recent", None)
    assert after == before  # nothing changed


def test_deploy_without_an_admin_token_or_with_a_wrong_one_is_refused_with_one_line(
    served: Served, tmp_path: Path
) -> None:
    missing = served.deploy("status", token=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "an admin token is needed" in missing.stderr
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("wrong-token-0123456789abcdef\n")
    refused = served.deploy("canary", "spare", "--weight", "50", "--admin-token-file", str(wrong), token=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "not accepted" in refused.stderr, refused.stderr
    assert roles(served.status()) == {"tiny": "stable", "spare": "idle"}

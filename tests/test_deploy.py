"""deploy/: what can be checked without building images or a cluster. The Kubernetes manifests against
the offline schemas of `kubernetes-validate`; the Dockerfiles parsed, their COPY sources present and
their commands accepted by the CLI; the systemd unit by systemd-analyze; the haproxy config by haproxy."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.replicas import ROOT

DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"


def manifests() -> list[dict[str, Any]]:
    import yaml

    docs = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    docs = manifests()
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    import yaml

    listed = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in (DEPLOY / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


def _serve_args(args: list[str]) -> Any:
    from voxrelay.cli import build_parser

    return build_parser().parse_args(["serve", *args])


def test_deployment_matches_the_recognizer_it_runs() -> None:
    from voxrelay.protos import SERVICE_NAME

    (deployment,) = by_kind("Deployment")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    args = _serve_args(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (args.port, args.http_port, args.metrics_port) == (ports["grpc"], ports["http"], ports["metrics"])
    assert container["readinessProbe"]["grpc"] == {"port": args.port, "service": SERVICE_NAME}
    assert container["livenessProbe"]["grpc"]["port"] == args.port
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == args.metrics_port
    assert pod["spec"]["terminationGracePeriodSeconds"] > args.grace_seconds
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert os.path.dirname(args.auth_token_file) in mounts
    labels = pod["metadata"]["labels"]
    for service in by_kind("Service"):
        assert service["spec"]["selector"].items() <= labels.items()
    headless = [s for s in by_kind("Service") if s["spec"].get("clusterIP") == "None"]
    assert headless and headless[0]["spec"]["ports"][0]["port"] == args.port
    (pdb,) = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_hpa_scales_on_a_metric_the_recognizer_exports() -> None:
    from prometheus_client import CollectorRegistry

    from voxrelay.cloud.metrics import CloudMetrics

    (hpa,) = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == by_kind("Deployment")[0]["metadata"]["name"]
    metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    registry = CollectorRegistry()
    CloudMetrics(registry)
    assert metric in {family.name for family in registry.collect()}


def _dockerfile(name: str) -> Any:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(DEPLOY / "docker" / name))
    return parser


@pytest.mark.parametrize("name", ["recognizer.Dockerfile", "edge.Dockerfile"])
def test_dockerfiles_parse_copy_what_exists_and_run_the_cli(name: str) -> None:
    import json

    from voxrelay.cli import build_parser

    parser = _dockerfile(name)
    instructions = [step for step in parser.structure if step["instruction"] != "COMMENT"]
    assert instructions[0]["instruction"] == "FROM" and "slim" in parser.baseimage
    for step in instructions:
        if step["instruction"] == "COPY":
            *sources, _ = shlex.split(step["value"])
            for source in sources:
                assert (ROOT / source).exists(), f"{name}: COPY {source} is not in the build context"
    users = [step["value"] for step in instructions if step["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    entrypoint = json.loads(next(s["value"] for s in instructions if s["instruction"] == "ENTRYPOINT"))
    cmd = json.loads(next(s["value"] for s in instructions if s["instruction"] == "CMD"))
    assert entrypoint[0] == "voxrelay"
    build_parser().parse_args([*entrypoint[1:], *cmd])  # argparse exits on a flag the CLI lacks
    installs = " ".join(s["value"] for s in instructions if s["instruction"] == "RUN" and "pip install" in s["value"])
    if name.startswith("edge"):
        # Light and arm64-buildable: only the edge's extras (no torch, no CTranslate2), nothing x86-only.
        assert "'.[edge,mic,silero]'" in installs and "cloud" not in installs and "amd64" not in installs
        from voxrelay.edge.link.settings import UplinkSettings

        args = build_parser().parse_args([*entrypoint[1:], *cmd])
        UplinkSettings(server=",".join(args.server), device_id="pi", tls=args.tls, spool_dir=args.spool_dir)
    else:
        assert "'.[cloud]'" in installs


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "voxrelay-edge.service").read_text()
    assert "Restart=on-failure" in unit and "--spool-dir /var/lib/voxrelay/spool" in unit
    assert "StateDirectory=voxrelay" in unit  # /var/lib/voxrelay: persistent storage
    voxrelay = shutil.which("voxrelay") or "/bin/true"
    copy = tmp_path / "voxrelay-edge.service"
    copy.write_text(
        unit.replace("/opt/voxrelay/bin/voxrelay", voxrelay).replace("EnvironmentFile=/", "EnvironmentFile=-/")
    )
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and str(copy) not in done.stderr, done.stderr
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    command = exec_start.removeprefix("ExecStart=").replace("${VOXRELAY_SERVER}", "127.0.0.1:50051")
    args = [a for a in shlex.split(command) if a != "$VOXRELAY_ARGS"]
    from voxrelay.cli import build_parser

    parsed = build_parser().parse_args(args[1:])
    assert parsed.command == "listen" and parsed.spool_dir == "/var/lib/voxrelay/spool"
    script = DEPLOY / "systemd" / "install-edge.sh"
    assert subprocess.run(["sh", "-n", str(script)], timeout=30).returncode == 0


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_config_is_valid() -> None:
    from tests.replicas import HAPROXY_CFG, Haproxy, Replica

    env = Haproxy([Replica(), Replica(), Replica()]).environment()
    done = subprocess.run(
        ["haproxy", "-c", "-f", str(HAPROXY_CFG)], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_configmap_thresholds_load_and_are_passed(tmp_path: Path) -> None:
    from voxrelay.monitoring.thresholds import load_thresholds

    (config,) = [c for c in by_kind("ConfigMap") if c["metadata"]["name"] == "voxrelay-config"]
    path = tmp_path / "thresholds.yaml"
    path.write_text(config["data"]["thresholds.yaml"])
    load_thresholds(path)  # raises on a file the recognizer would refuse
    (deployment,) = by_kind("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = _serve_args(container["args"])
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config")
    assert args.thresholds_file == f"{mount}/thresholds.yaml"

"""--server targets: one address, a list of replicas, dns:/// names; the channel they open."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import ServerThread
from voxrelay.edge.link.settings import UplinkSettings
from voxrelay.edge.link.targets import Target, service_config
from voxrelay.edge.transcribe import parse_server
from voxrelay.errors import InvalidArgument


def test_parse_forms() -> None:
    one = Target.parse("127.0.0.1:50051")
    assert not one.balanced and one.grpc_target() == "127.0.0.1:50051"
    several = Target.parse("127.0.0.1:1, 127.0.0.2:2")
    assert several.balanced and several.grpc_target() == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert Target.parse("[::1]:5,[::1]:6").grpc_target() == "ipv6:[::1]:5,[::1]:6"
    assert Target.parse("localhost:7,127.0.0.1:8").grpc_target() == "ipv4:127.0.0.1:7,127.0.0.1:8"
    dns = Target.parse("dns:///voxrelay.asr.svc.cluster.local:50051")
    assert dns.balanced and dns.hosts == ("voxrelay.asr.svc.cluster.local",)
    assert dns.grpc_target() == "dns:///voxrelay.asr.svc.cluster.local:50051"
    assert Target.parse("dns://10.0.0.10:53/asr:50051").hosts == ("asr",)
    assert parse_server(["127.0.0.1:1", "127.0.0.1:2"]) == "127.0.0.1:1,127.0.0.1:2"
    config = json.loads(service_config())
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"]["serviceName"] == "voxrelay.v1.Recognizer"


@pytest.mark.parametrize("bad", ["", "host", "host:", "host:0", "a:1,b", "dns:///name", "dns:///:80"])
def test_bad_targets_name_the_flag(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="--server"):
        parse_server(bad)


def test_plaintext_refused_when_any_replica_is_remote() -> None:
    UplinkSettings(server="127.0.0.1:1,localhost:2", device_id="d")
    with pytest.raises(InvalidArgument, match=r"in plaintext to 10\.1\.2\.3"):
        UplinkSettings(server="127.0.0.1:1,10.1.2.3:2", device_id="d")
    with pytest.raises(InvalidArgument, match=r"asr\.example"):
        UplinkSettings(server="dns:///asr.example:50051", device_id="d")
    UplinkSettings(server="dns:///asr.example:50051", device_id="d", tls=True)


def test_dns_target_and_replica_list_reach_the_server(server: ServerThread) -> None:
    """dns:///localhost resolves to ::1 and 127.0.0.1; round_robin with health checks uses the one
    that answers. A list with a dead replica in it works the same way."""
    from voxrelay.edge.link.channel import connect
    from voxrelay.protos import pb, pb_grpc

    async def info(target: str) -> str:
        channel = await connect(UplinkSettings(server=target, device_id="d", connect_timeout=20))
        try:
            reply = await pb_grpc.RecognizerStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10)
            return str(reply.models[0].name)
        finally:
            await channel.close()

    from tests.replicas import free_port

    assert asyncio.run(info(f"dns:///localhost:{server.port}")) == "tiny.en"
    assert asyncio.run(info(f"127.0.0.1:{free_port()},{server.address}")) == "tiny.en"

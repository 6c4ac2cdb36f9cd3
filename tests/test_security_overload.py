"""Overload over real gRPC: when the server fills, bulk work is shed first while the calls
an IMMEDIATE dispatch is made of are still served; per-principal rate limits from the
policy; every refusal RESOURCE_EXHAUSTED with a google.rpc.RetryInfo delay."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.certs import issue, make_ca
from dispatch_core.security.tls import SecurityConfig
from dispatch_core.server import Running, start


def _retry_delay(err: grpc.RpcError) -> float:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "no status details"
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.ToNanoseconds() / 1e9
    raise AssertionError(f"no RetryInfo in {status}")


class HeldStream:
    """A StreamLocations call kept open (bulk work occupying a slot and a worker)."""

    def __init__(self, stub: pb_grpc.DispatchServiceStub) -> None:
        self.release = threading.Event()
        self.sent = threading.Event()

        def requests() -> Iterator[pb.StreamLocationsRequest]:
            yield pb.StreamLocationsRequest()
            self.sent.set()
            self.release.wait(30)

        self.call = stub.StreamLocations.future(requests(), timeout=60)


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[Running]:
    running = start("127.0.0.1", 0, tmp_path / "data", max_workers=40, max_concurrent_rpcs=16)
    yield running
    running.stop(0)


def _immediate(stub: pb_grpc.DispatchServiceStub) -> str:
    return stub.CreateIncident(
        pb.CreateIncidentRequest(
            request_id=str(uuid.uuid4()),
            grade=pb.GRADE_IMMEDIATE,
            incident_type="violence",
            location=pb.Location(lat=51.5007, lon=-0.1246),
            requirements=[pb.RequirementGroup(agency=pb.AGENCY_POLICE, count=1)],
        ),
        timeout=10,
    ).incident.incident_id


def test_bulk_is_shed_while_immediate_dispatch_is_served(busy: Running) -> None:
    admission = busy.admission
    assert admission is not None
    bulk_ceiling = admission.ceilings[0]
    with grpc.insecure_channel(f"127.0.0.1:{busy.port}") as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        stub.UpsertUnit(
            pb.UpsertUnitRequest(
                request_id=str(uuid.uuid4()),
                unit=pb.UnitSpec(unit_id="OV-1", agency=pb.AGENCY_POLICE, unit_type="irv"),
            ),
            timeout=10,
        )
        stub.UpdateLocations(
            pb.UpdateLocationsRequest(
                unit_ids=["OV-1"], lat=[51.5], lon=[-0.12], time_unix_ms=[time.time_ns() // 10**6]
            ),
            timeout=10,
        )
        held = [HeldStream(stub) for _ in range(bulk_ceiling)]
        try:
            for stream in held:
                assert stream.sent.wait(10)
            deadline = time.monotonic() + 10
            while admission.admitted < bulk_ceiling and time.monotonic() < deadline:
                time.sleep(0.01)
            assert admission.admitted == bulk_ceiling
            # Bulk reads and pictures are shed, each told when to retry...
            for shed in (
                lambda: stub.ListUnits(pb.ListUnitsRequest(), timeout=10),
                lambda: stub.GetOperatingPicture(pb.GetOperatingPictureRequest(), timeout=10),
                lambda: stub.UpdateLocations(pb.UpdateLocationsRequest(), timeout=10),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    shed()
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert _retry_delay(refused.value) > 0
            # ...while an IMMEDIATE incident is created, ranked and dispatched.
            incident_id = _immediate(stub)
            ranked = stub.RecommendUnits(
                pb.RecommendUnitsRequest(incident_id=incident_id), timeout=10
            )
            assert ranked.groups[0].candidates[0].unit_id == "OV-1"
            stub.AssignUnits(
                pb.AssignUnitsRequest(
                    request_id=str(uuid.uuid4()), incident_id=incident_id, unit_ids=["OV-1"]
                ),
                timeout=10,
            )
            # Ordinary calls still have their share too.
            stub.Ping(pb.PingRequest(), timeout=10)
        finally:
            for stream in held:
                stream.release.set()
            for stream in held:
                stream.call.result(timeout=10)


def test_rate_limit_per_principal_with_retry_delay(tmp_path: Path) -> None:
    ca = make_ca()
    issue(ca, "localhost", server=True, ips=("127.0.0.1",)).write(tmp_path, "server")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[roles.monitor]\nrpcs = ["Ping"]\nrate = 2\nburst = 3\n'
        '[roles.admin]\nrpcs = ["*"]\n'
        '[principals]\n"slow" = ["monitor"]\n"fast" = ["admin"]\n'
    )
    security = SecurityConfig(
        tls_cert=tmp_path / "server.crt",
        tls_key=tmp_path / "server.key",
        client_ca=tmp_path / "ca.crt",
        policy=policy,
    )
    security.check("127.0.0.1")
    running = start("127.0.0.1", 0, tmp_path / "data", security=security)
    try:

        def stub_for(name: str) -> pb_grpc.DispatchServiceStub:
            leaf = issue(ca, name)
            creds = grpc.ssl_channel_credentials(ca.cert_pem, leaf.key_pem, leaf.cert_pem)
            return pb_grpc.DispatchServiceStub(
                grpc.secure_channel(f"127.0.0.1:{running.port}", creds)
            )

        slow, fast = stub_for("slow"), stub_for("fast")
        for _ in range(3):  # the burst
            slow.Ping(pb.PingRequest(), timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            slow.Ping(pb.PingRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "rate limit: slow may make 2 calls/s" in str(refused.value.details())
        delay = _retry_delay(refused.value)
        assert 0 < delay <= 0.5
        # Another principal has a bucket of its own.
        for _ in range(10):
            fast.Ping(pb.PingRequest(), timeout=10)
        # After the delay it was told, the slow caller is served again.
        time.sleep(delay + 0.05)
        slow.Ping(pb.PingRequest(), timeout=10)
    finally:
        running.stop(0)

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


def _create(grade: int = pb.GRADE_IMMEDIATE) -> pb.CreateIncidentRequest:
    return pb.CreateIncidentRequest(
        request_id=str(uuid.uuid4()),
        grade=grade,
        incident_type="violence",
        location=pb.Location(lat=51.5007, lon=-0.1246),
        requirements=[pb.RequirementGroup(agency=pb.AGENCY_POLICE, count=1)],
    )


def _immediate(stub: pb_grpc.DispatchServiceStub) -> str:
    return stub.CreateIncident(_create(), timeout=10).incident.incident_id


def _ad_hoc(grade: int) -> pb.RecommendUnitsRequest:
    return pb.RecommendUnitsRequest(
        ad_hoc=pb.AdHocTarget(
            location=pb.Location(lat=51.5, lon=-0.12),
            grade=grade,
            requirements=[pb.RequirementGroup(agency=pb.AGENCY_POLICE, count=1)],
        )
    )


class HeldPing:
    """A Ping (an ordinary call) whose request message is held back: grpcio admits it at
    its headers and a worker waits for the message, so it holds a slot until released."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.release = threading.Event()

        def requests() -> Iterator[pb.PingRequest]:
            self.release.wait(30)
            yield pb.PingRequest()

        ping = channel.stream_unary(
            "/dispatch.v1.DispatchService/Ping",
            request_serializer=pb.PingRequest.SerializeToString,
            response_deserializer=pb.PingResponse.FromString,
        )
        self.call = ping.future(requests(), timeout=60)


def _setup_units(stub: pb_grpc.DispatchServiceStub, count: int) -> None:
    now = time.time_ns() // 10**6
    for n in range(count):
        stub.UpsertUnit(
            pb.UpsertUnitRequest(
                request_id=str(uuid.uuid4()),
                unit=pb.UnitSpec(unit_id=f"OV-{n}", agency=pb.AGENCY_POLICE, unit_type="irv"),
            ),
            timeout=10,
        )
    stub.UpdateLocations(
        pb.UpdateLocationsRequest(
            unit_ids=[f"OV-{n}" for n in range(count)],
            lat=[51.5 + n / 1000 for n in range(count)],
            lon=[-0.12] * count,
            time_unix_ms=[now] * count,
        ),
        timeout=10,
    )


def test_a_full_server_serves_every_immediate_dispatch_and_sheds_the_rest(busy: Running) -> None:
    """Held bulk streams and ordinary calls fill the server to the ordinary ceiling: bulk
    reads, ordinary calls and dispatch calls of lower grades are refused with a retry
    delay and change nothing, while every IMMEDIATE create, ranking (of an incident or an
    ad-hoc target) and assignment is served, several at once too."""
    admission = busy.admission
    assert admission is not None
    bulk, normal = admission.ceilings[0], admission.ceilings[1]
    with grpc.insecure_channel(f"127.0.0.1:{busy.port}") as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        _setup_units(stub, 8)
        low = stub.CreateIncident(_create(pb.GRADE_EXTENDED), timeout=10).incident.incident_id
        streams = [HeldStream(stub) for _ in range(bulk)]
        pings = [HeldPing(channel) for _ in range(normal - bulk)]
        try:
            for stream in streams:
                assert stream.sent.wait(10)
            deadline = time.monotonic() + 10
            while admission.admitted < normal and time.monotonic() < deadline:
                time.sleep(0.01)
            assert admission.admitted == normal
            sequence = busy.pipeline.core.sequence
            for shed in (
                lambda: stub.ListUnits(pb.ListUnitsRequest(), timeout=10),
                lambda: stub.Ping(pb.PingRequest(), timeout=10),
                lambda: stub.CreateIncident(_create(pb.GRADE_SIGNIFICANT), timeout=10),
                lambda: stub.RecommendUnits(pb.RecommendUnitsRequest(incident_id=low), timeout=10),
                lambda: stub.RecommendUnits(_ad_hoc(pb.GRADE_REFERRED), timeout=10),
                lambda: stub.AssignUnits(
                    pb.AssignUnitsRequest(
                        request_id=str(uuid.uuid4()), incident_id=low, unit_ids=["OV-7"]
                    ),
                    timeout=10,
                ),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    shed()
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert _retry_delay(refused.value) > 0
            assert busy.pipeline.core.sequence == sequence, "a shed call changed the state"
            # Every IMMEDIATE dispatch is served: one after another...
            for _ in range(3):
                incident_id = _immediate(stub)
                ranked = stub.RecommendUnits(
                    pb.RecommendUnitsRequest(incident_id=incident_id), timeout=10
                )
                unit = ranked.groups[0].candidates[0].unit_id
                assert stub.RecommendUnits(_ad_hoc(pb.GRADE_IMMEDIATE), timeout=10).groups
                stub.AssignUnits(
                    pb.AssignUnitsRequest(
                        request_id=str(uuid.uuid4()), incident_id=incident_id, unit_ids=[unit]
                    ),
                    timeout=10,
                )
            # ...and as many at once as the reserve holds.
            burst = [
                stub.CreateIncident.future(_create(), timeout=10)
                for _ in range(admission.limit + admission.reserve - normal)
            ]
            assert all(f.result().incident.grade == pb.GRADE_IMMEDIATE for f in burst)
        finally:
            for stream in streams:
                stream.release.set()
            for ping in pings:
                ping.release.set()
            for stream in streams:
                stream.call.result(timeout=10)
            for ping in pings:
                ping.call.result(timeout=10)


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


def test_rate_limits_never_refuse_an_immediate_dispatch(tmp_path: Path) -> None:
    """A call taker whose bucket is empty is refused a lower-grade incident (with the
    delay to wait) but still creates, ranks and assigns IMMEDIATE ones, over mutual TLS."""
    ca = make_ca()
    issue(ca, "localhost", server=True, ips=("127.0.0.1",)).write(tmp_path, "server")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[roles.dispatcher]\nrpcs = ["CreateIncident", "RecommendUnits", "AssignUnits",'
        ' "UpsertUnit", "UpdateLocations"]\nrate = 0.01\nburst = 1\n'
        '[roles.admin]\nrpcs = ["*"]\n'
        '[principals]\n"busy" = ["dispatcher"]\n"setup" = ["admin"]\n'
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

        setup, busy = stub_for("setup"), stub_for("busy")
        _setup_units(setup, 4)
        low = setup.CreateIncident(_create(pb.GRADE_SIGNIFICANT), timeout=10).incident.incident_id
        busy.CreateIncident(_create(pb.GRADE_REFERRED), timeout=10)  # the burst of one
        for refused_call in (
            lambda: busy.CreateIncident(_create(pb.GRADE_REFERRED), timeout=10),
            lambda: busy.RecommendUnits(pb.RecommendUnitsRequest(incident_id=low), timeout=10),
            lambda: busy.RecommendUnits(_ad_hoc(pb.GRADE_EXTENDED), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                refused_call()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "rate limit: busy" in str(refused.value.details())
            assert _retry_delay(refused.value) > 0
        for _ in range(3):
            incident_id = _immediate(busy)
            ranked = busy.RecommendUnits(
                pb.RecommendUnitsRequest(incident_id=incident_id), timeout=10
            )
            assert busy.RecommendUnits(_ad_hoc(pb.GRADE_IMMEDIATE), timeout=10).groups
            busy.AssignUnits(
                pb.AssignUnitsRequest(
                    request_id=str(uuid.uuid4()),
                    incident_id=incident_id,
                    unit_ids=[ranked.groups[0].candidates[0].unit_id],
                ),
                timeout=10,
            )
    finally:
        running.stop(0)

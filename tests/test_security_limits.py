"""Request sizes under hostile load, over real gRPC: each RPC's own limit, gRPC's overall
limit, and the server's memory when 16 clients each send a 60 MiB Ping at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_status import rpc_status

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.service.sizes import KIB, MIB, PER_RPC
from tests.conftest import ServerProcess, start_server

SERVICE = "/dispatch.v1.DispatchService/"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(tmp_path_factory.mktemp("limits"))
    yield running
    assert running.stop() == 0, running.log()
    assert "Traceback" not in running.log(), running.log()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _padded(message: bytes, size: int) -> bytes:
    """`message` with an unknown field (number 1000) making it about `size` bytes: the
    server must measure it before it decodes it."""
    filler = max(0, size - len(message) - 6)
    return message + _varint((1000 << 3) | 2) + _varint(filler) + b"x" * filler


def _call(channel: grpc.Channel, method: str, request: bytes) -> grpc.RpcError | None:
    call = channel.unary_unary(SERVICE + method)  # bytes in, bytes out
    try:
        call(request, timeout=60)
    except grpc.RpcError as err:
        return err
    return None


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_each_rpc_has_its_own_limit(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        err = _call(channel, "Ping", _padded(b"", 2 * KIB))
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"limit of {PER_RPC['Ping']} bytes" in str(err.details())
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
        assert status is not None and status.details, "BadRequest detail expected"
        # A ranking request's worst case is 68 kB; 200 kB is not one.
        recommend = pb.RecommendUnitsRequest(incident_id="INC-1").SerializeToString()
        err = _call(channel, "RecommendUnits", _padded(recommend, 200 * KIB))
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Under its limit the same RPC is answered as usual (the incident is unknown).
        err = _call(channel, "RecommendUnits", _padded(recommend, 64 * KIB))
        assert err is not None and err.code() == grpc.StatusCode.NOT_FOUND
        # Location batches are megabytes: a 5 MB one is taken.
        assert _call(channel, "UpdateLocations", _padded(b"", 5 * MIB)) is None
        # Beyond every RPC's limit gRPC itself refuses, before any handler.
        err = _call(channel, "UpdateLocations", _padded(b"", 20 * MIB))
        assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_bytes_that_are_no_message_are_invalid_argument(server: ServerProcess) -> None:
    """RPCs whose requests Python decodes itself answer garbage as the core does."""
    with grpc.insecure_channel(server.target) as channel:
        for method in ("Ping", "GetOperatingPicture", "QueryAudit", "WatchEvents"):
            if method == "WatchEvents":
                stream = channel.unary_stream(SERVICE + method)
                with pytest.raises(grpc.RpcError) as refused:
                    next(iter(stream(b"\xff\xff\xff", timeout=10)))
                err: grpc.RpcError | None = refused.value
            else:
                err = _call(channel, method, b"\xff\xff\xff")
            assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "not a valid" in str(err.details()), method


def test_an_oversized_stream_message_ends_the_stream(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stream = channel.stream_unary(SERVICE + "StreamLocations")
        with pytest.raises(grpc.RpcError) as refused:
            stream(iter([b"", _padded(b"", 13 * MIB)]), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit of" in str(refused.value.details())


def test_sixteen_huge_pings_do_not_grow_the_server(server: ServerProcess) -> None:
    """Before the limits: 60 -> 553 MiB. Now gRPC refuses each at its header."""
    huge = _padded(b"", 60 * MIB)
    pid = server.process.pid
    before = _rss_kib(pid)
    peak = before
    codes: list[grpc.StatusCode] = []
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, _rss_kib(pid))

    def send() -> None:
        with grpc.insecure_channel(
            server.target, options=[("grpc.max_send_message_length", 64 * MIB)]
        ) as channel:
            err = _call(channel, "Ping", huge)
            codes.append(err.code() if err is not None else grpc.StatusCode.OK)

    sampler = threading.Thread(target=sample)
    sampler.start()
    senders = [threading.Thread(target=send) for _ in range(16)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    done.set()
    sampler.join()
    assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 16
    grown_mib = (peak - before) / 1024
    print(f"server RSS {before / 1024:.0f} MiB -> peak {peak / 1024:.0f} MiB")
    assert grown_mib < 200, f"server grew {grown_mib:.0f} MiB under 16 x 60 MiB Pings"

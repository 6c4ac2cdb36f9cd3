"""Overload is visible: calls refused by the server's admission limit are answered
RESOURCE_EXHAUSTED and appear in the /metrics scrape and the access log with that code.
A real server over real gRPC with a small limit, filled by real open streams.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.server import Running, start
from dispatch_core.views.metrics import Metrics

PING = "dispatch.v1.DispatchService/Ping"
STREAM = "dispatch.v1.DispatchService/StreamLocations"


def _count(url: str, method: str, code: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "dispatch_rpc_duration_seconds_count" and sample.labels == {
                "method": method,
                "code": code,
            }:
                return float(sample.value)
    return 0.0


class Held:
    """An open StreamLocations call that holds an admission slot until released."""

    def __init__(self, stub: pb_grpc.DispatchServiceStub) -> None:
        self.sent = threading.Event()
        self.release = threading.Event()
        self.call = stub.StreamLocations.future(self._requests())

    def _requests(self) -> Iterator[pb.StreamLocationsRequest]:
        yield pb.StreamLocationsRequest()
        self.sent.set()
        self.release.wait(20)


def _wait(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.01)


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Running, str]]:
    """A server admitting 2 calls at once, with one worker thread, /metrics served."""
    metrics = Metrics(process=False)
    http = metrics.serve_http("127.0.0.1", 0)
    running = start(
        "127.0.0.1",
        0,
        tmp_path / "data",
        max_workers=1,
        metrics=metrics,
        max_concurrent_rpcs=2,
        metrics_server=http,
    )
    yield running, http.url
    running.stop(0)


def test_refused_calls_are_resource_exhausted_in_the_scrape(
    small: tuple[Running, str],
) -> None:
    running, url = small
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        stub.Ping(pb.PingRequest(), timeout=5)
        first = Held(stub)
        assert first.sent.wait(10)
        # The one worker runs the first stream; the second is admitted and waits for it.
        second = Held(stub)
        assert second.sent.wait(10)
        _wait(lambda: running_admitted(running) == 2)
        refused = 0
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as err:
                stub.Ping(pb.PingRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "overloaded" in (err.value.details() or "")
            refused += 1
        assert _count(url, PING, "RESOURCE_EXHAUSTED") == refused
        assert _count(url, PING, "OK") == 1
        first.release.set()
        second.release.set()
        assert first.call.result(timeout=10).batches == 1
        assert second.call.result(timeout=10).batches == 1
        # The slots are given back: the server takes calls again.
        _wait(lambda: running_admitted(running) == 0)
        stub.Ping(pb.PingRequest(), timeout=5)
    assert _count(url, PING, "OK") == 2
    assert _count(url, STREAM, "OK") == 2


def test_a_call_that_gave_up_while_queued_gives_its_slot_back(
    small: tuple[Running, str],
) -> None:
    running, url = small
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.DispatchServiceStub(channel)
        held = Held(stub)
        assert held.sent.wait(10)
        # Admitted, queued behind the busy worker, and abandoned by its client: its handler
        # never runs, yet its slot must come back when the worker reaches it.
        with pytest.raises(grpc.RpcError) as err:
            stub.Ping(pb.PingRequest(), timeout=0.2)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as err:
            stub.Ping(pb.PingRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        held.release.set()
        held.call.result(timeout=10)
        _wait(lambda: running_admitted(running) == 0)
        for _ in range(5):
            stub.Ping(pb.PingRequest(), timeout=5)
    assert _count(url, PING, "RESOURCE_EXHAUSTED") == 1


def running_admitted(running: Running) -> int:
    """Calls the server has admitted and not finished (its admission's own count)."""
    admission = running.admission
    assert admission is not None
    return admission.admitted

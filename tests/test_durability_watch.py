"""WatchEvents: resumable from any sequence with no gap and no duplicate, a stalled consumer
never holds the engine up, and history that was truncated away is OUT_OF_RANGE."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from tests.durable import (
    Backend,
    Server,
    backend_fixture,  # noqa: F401 (the fixture)
    incident_request,
    launch,
    stub,
    unit_request,
)


def _read(api: pb_grpc.DispatchServiceStub, after: int, until: int) -> list[pb.WatchEventsResponse]:
    """Events after `after` up to sequence `until`, then cancels the stream."""
    stream = api.WatchEvents(pb.WatchEventsRequest(from_sequence=after), timeout=30)
    got: list[pb.WatchEventsResponse] = []
    if after >= until:
        stream.cancel()
        return got
    for event in stream:
        got.append(event)
        if event.sequence >= until:
            break
    stream.cancel()
    return got


@pytest.fixture
def server(backend: Backend, tmp_path: Path) -> Iterator[Server]:
    running = launch(backend, tmp_path, "--watch-buffer", "50")
    yield running
    running.kill()


def test_resuming_from_any_sequence_gives_exactly_the_missing_events(server: Server) -> None:
    channel, api = stub(server)
    with channel:
        for i in range(10):
            api.UpsertUnit(unit_request(f"u{i}", f"U{i}"))
        for i in range(10):
            api.CreateIncident(incident_request(f"c{i}"))
        everything = _read(api, 0, 20)
        assert [e.sequence for e in everything] == list(range(1, 21))
        assert everything[0].WhichOneof("change") == "unit_upserted"
        assert everything[0].unit_upserted.unit.unit_id == "U0"
        assert everything[10].incident_created.incident.incident_id
        assert everything[10].request_id == "c0" and everything[10].method == "CreateIncident"
        for after in (1, 7, 13, 19):
            assert _read(api, after, 20) == everything[after:]
        # A client that read part of the stream and reconnects with its last sequence.
        partial = api.WatchEvents(pb.WatchEventsRequest(from_sequence=0), timeout=30)
        seen = [next(partial) for _ in range(6)]
        partial.cancel()
        assert seen + _read(api, seen[-1].sequence, 20) == everything
        # Ahead of the journal: refused rather than silently skipping what comes between.
        with pytest.raises(grpc.RpcError) as err:
            next(iter(api.WatchEvents(pb.WatchEventsRequest(from_sequence=99), timeout=10)))
        assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_history_then_live_while_commands_run_has_no_gap(server: Server) -> None:
    channel, api = stub(server)
    with channel:
        for i in range(5):
            api.UpsertUnit(unit_request(f"u{i}", f"U{i}"))
        total = 5 + 3 * 60
        done = threading.Event()

        def writer(k: int) -> None:
            with grpc.insecure_channel(server.target) as ch:
                w = pb_grpc.DispatchServiceStub(ch)
                for i in range(60):
                    w.CreateIncident(incident_request(f"w{k}-{i}"))

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        # Streams opened while commands land: each must switch from the journal's history
        # to live events without losing or repeating one.
        streams = []
        for after in (0, 3):
            time.sleep(0.05)
            streams.append((after, _read(api, after, total)))
        for t in threads:
            t.join()
        done.set()
        for after, got in streams:
            assert [e.sequence for e in got] == list(range(after + 1, total + 1))
        live = api.WatchEvents(pb.WatchEventsRequest(from_now=True), timeout=30)
        api.CreateIncident(incident_request("after-live"))
        assert next(live).sequence == total + 1
        live.cancel()


def test_a_stalled_consumer_does_not_stop_commands_and_is_told_to_resume(
    server: Server,
) -> None:
    # A consumer that really stalls: a tiny HTTP/2 window and no window growth, so the
    # transport cannot absorb the backlog and the server-side stream must hold it.
    slow = grpc.insecure_channel(
        server.target,
        options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)],
    )
    channel, api = stub(server)
    with channel, slow:
        api.UpsertUnit(unit_request("u0", "U0"))
        stalled = pb_grpc.DispatchServiceStub(slow).WatchEvents(
            pb.WatchEventsRequest(from_sequence=0), timeout=180
        )
        # Take the one historical event, then give the server a moment to finish catching
        # up from the journal and subscribe to live events: a consumer that stalls during
        # the catch-up reads the journal, never the live buffer, so it cannot overflow it
        # (and holds nothing up); the stall under test is the live one.
        first = next(stalled)
        time.sleep(1.0)
        # Commands keep completing although nobody reads the stream (its buffer is 50).
        n = 600

        def writer(k: int) -> None:
            with grpc.insecure_channel(server.target) as ch:
                w = pb_grpc.DispatchServiceStub(ch)
                for i in range(n // 3):
                    w.CreateIncident(incident_request(f"s{k}-{i}"), timeout=10)

        # A command held up by the stalled stream would hit its 10 s deadline and fail the
        # writer; no wall-clock bound on the whole batch, which a loaded CI machine could
        # exceed without anything being wrong.
        errors: list[BaseException] = []

        def guarded(k: int) -> None:
            try:
                writer(k)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=guarded, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        received: list[int] = [first.sequence]
        with pytest.raises(grpc.RpcError) as err:
            for event in stalled:
                received.append(event.sequence)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
        last = received[-1]
        assert f"from_sequence={last}" in (err.value.details() or "")
        assert received == list(range(1, last + 1))
        # Resuming where it stopped gives the rest, without a gap.
        rest = _read(api, last, n + 1)
        assert [e.sequence for e in rest] == list(range(last + 1, n + 2))


def test_events_truncated_away_are_out_of_range(backend: Backend, tmp_path: Path) -> None:
    server = launch(backend, tmp_path)
    channel, api = stub(server)
    with channel:
        for i in range(6):
            api.UpsertUnit(unit_request(f"u{i}", f"U{i}"))
    assert server.stop() == 0  # a graceful stop writes a final snapshot at sequence 6
    with backend.config().open() as journal:
        assert journal.latest_snapshot() is not None
        assert journal.truncate_before(4) == 3
    server = launch(backend, tmp_path)
    try:
        channel, api = stub(server)
        with channel:
            with pytest.raises(grpc.RpcError) as err:
                next(iter(api.WatchEvents(pb.WatchEventsRequest(from_sequence=0), timeout=10)))
            assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert "earliest available is sequence 4" in (err.value.details() or "")
            assert [e.sequence for e in _read(api, 3, 6)] == [4, 5, 6]
            # The state is whole: the snapshot covers what the truncation removed.
            assert api.GetUnit(pb.GetUnitRequest(unit_id="U0")).unit.unit_id == "U0"
    finally:
        server.kill()

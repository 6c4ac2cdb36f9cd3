"""The GIL is released and the index is safe from many threads: ranking runs while another
thread moves every unit, with no errors and results that are always a valid ranking."""

from __future__ import annotations

import threading
import time

import numpy as np

from dispatch_core import UnitIndex
from dispatch_core.types import Agency, UnitStatus


def fleet(n: int) -> tuple[UnitIndex, np.ndarray, np.ndarray, np.ndarray]:
    idx = UnitIndex()
    rng = np.random.default_rng(7)
    for i in range(n):
        idx.upsert_unit(f"U{i}", agency=Agency.POLICE, unit_type="irv")
    slots = idx.slots_of([f"U{i}" for i in range(n)])
    lat = 51.5 + rng.normal(0, 0.05, n)
    lon = -0.1 + rng.normal(0, 0.08, n)
    idx.update_locations_by_slot(slots, lat, lon, np.ones(n, dtype=np.int64))
    return idx, slots, lat, lon


def test_rank_while_another_thread_updates() -> None:
    idx, slots, lat, lon = fleet(20_000)
    stop = threading.Event()
    errors: list[BaseException] = []
    rounds = [0]

    def mover() -> None:
        t = 2
        rng = np.random.default_rng(1)
        while not stop.is_set():
            idx.update_locations_by_slot(
                slots,
                lat + rng.normal(0, 1e-3, len(slots)),
                lon + rng.normal(0, 1e-3, len(slots)),
                np.full(len(slots), t, dtype=np.int64),
            )
            t += 1
            rounds[0] += 1

    def ranker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(3000):
                top = idx.rank(
                    51.5 + rng.normal(0, 0.05), -0.1 + rng.normal(0, 0.05), now_ms=10, k=5
                )
                assert len(top) == 5
                assert [c.score for c in top] == sorted(c.score for c in top)
                assert len({c.unit_id for c in top}) == 5
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=ranker, args=(s,)) for s in range(3)]
    mover_thread = threading.Thread(target=mover)
    mover_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    mover_thread.join()
    assert not errors, errors
    assert rounds[0] >= 1


def test_gil_is_released_during_batch_work() -> None:
    """While one thread runs long batch rankings, a pure-Python thread keeps counting:
    with the GIL held throughout, it would stall for the whole batch."""
    idx, _, _, _ = fleet(50_000)
    q = np.random.default_rng(3)
    qlat, qlon = 51.5 + q.normal(0, 0.05, 20_000), -0.1 + q.normal(0, 0.05, 20_000)
    ticks = [0]
    done = threading.Event()

    def counter() -> None:
        while not done.is_set():
            ticks[0] += 1
            time.sleep(0)

    t = threading.Thread(target=counter)
    t.start()
    before = ticks[0]
    batch = idx.rank_batch(qlat, qlon, now_ms=10, k=5)
    during = ticks[0] - before
    done.set()
    t.join()
    assert (batch.counts == 5).all()
    assert during > 0


def test_concurrent_assignments_never_share_a_unit() -> None:
    idx = UnitIndex()
    for i in range(50):
        idx.upsert_unit(f"U{i}", agency=Agency.POLICE, unit_type="irv")
    wins: dict[str, list[str]] = {}
    lock = threading.Lock()

    def assigner(n: int) -> None:
        for j in range(50):
            units = [f"U{(j + n) % 50}", f"U{(j * 7 + n) % 50}"]
            if units[0] == units[1]:
                continue
            try:
                idx.assign(f"INC{n}-{j}", units)
            except ValueError:
                continue
            with lock:
                for u in units:
                    wins.setdefault(u, []).append(f"INC{n}-{j}")

    threads = [threading.Thread(target=assigner, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for uid, incidents in wins.items():
        assert len(incidents) == 1, (uid, incidents)
        unit = idx.get_unit(uid)
        assert unit.status == UnitStatus.DISPATCHED and unit.incident_id == incidents[0]

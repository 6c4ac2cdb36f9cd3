"""Shared pieces of the ranking benchmarks: timing, the machine, the baselines, the rivals.

Used by `run.py` (the driver that writes bench-results/) and by the pytest-benchmark
modules beside it, so both measure the very same code paths. Nothing here decides pass or
fail: timings live in benchmarks only (docs/architecture.md, "Performance: how we measure").
"""

from __future__ import annotations

import io
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from dispatch_core.loadtest.procs import cpu_model
from dispatch_core.synthetic.fleet import CAPABILITIES, Fleet, load_into
from dispatch_core.types import UnitStatus

if TYPE_CHECKING:
    from dispatch_core._core import UnitIndex

T = TypeVar("T")

#: Mean Earth radius (IUGG), the sphere haversine distances use.
EARTH_RADIUS_M = 6_371_008.8

#: Top-K every ranking benchmark asks for: a response plan rarely needs more than five.
K = 5

#: The query mix: label -> required capabilities. "taser" is common (a quarter of police
#: crews carry one); "dog" and "firearms" are rare specialists, the case where a filter
#: that runs after a nearest-first scan has to walk far.
CAP_QUERIES: dict[str, tuple[str, ...]] = {
    "none": (),
    "taser": ("taser",),
    "dog": ("dog",),
    "firearms": ("firearms",),
}

AVAILABLE = int(UnitStatus.AVAILABLE)

REDIS_URL = os.environ.get("DISPATCH_BENCH_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES_DSN = os.environ.get(
    "DISPATCH_BENCH_POSTGRES", "host=127.0.0.1 port=5432 dbname=test user=postgres"
)


# --------------------------------------------------------------------------- the machine


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare two result files: cores, CPU, versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    info: dict[str, Any] = {
        "nproc": usable or os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    try:
        from dispatch_core import _core  # noqa: PLC0415 - optional until the extension is built

        info["dispatch_core"] = _core.__version__
    except ImportError:
        info["dispatch_core"] = None
    return info


def machine_line(info: dict[str, Any] | None = None) -> str:
    info = info or machine_info()
    return f"{info['nproc']} cores, {info['cpu_model']}, Python {info['python']}"


def rss_bytes() -> int:
    """Resident set size of this process now (not the peak that getrusage reports)."""
    try:
        with open("/proc/self/statm", encoding="utf-8") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


# -------------------------------------------------------------------------------- timing


@dataclass(frozen=True, slots=True)
class Timing:
    """Per-call latency distribution of one measured operation, in microseconds."""

    p50_us: float
    p99_us: float
    mean_us: float
    calls: int

    @staticmethod
    def from_ns(samples: npt.NDArray[np.int64]) -> Timing:
        us = samples.astype(np.float64) / 1e3
        return Timing(
            p50_us=float(np.percentile(us, 50)),
            p99_us=float(np.percentile(us, 99)),
            mean_us=float(us.mean()),
            calls=int(us.size),
        )

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Budget:
    """How long one measurement may run: at least `min_calls`, then until `seconds`."""

    seconds: float
    min_calls: int
    max_calls: int
    warmup: int = 20

    @staticmethod
    def quick() -> Budget:
        return Budget(seconds=0.25, min_calls=100, max_calls=5_000, warmup=10)

    @staticmethod
    def full() -> Budget:
        return Budget(seconds=2.0, min_calls=1_000, max_calls=50_000, warmup=50)


def time_calls(fn: Callable[[int], object], budget: Budget) -> Timing:
    """Time `fn(i)` call by call with perf_counter_ns, i = 0, 1, 2, ...

    Per-call samples (not one total divided by the count) are what give a p99. The loop
    stops after `min_calls` once the time budget is spent, so a slow baseline at 100k units
    stays bounded while a fast call still gets thousands of samples.
    """
    return time_prepared(lambda i: i, fn, budget)


def time_prepared(
    prepare: Callable[[int], T], call: Callable[[T], object], budget: Budget
) -> Timing:
    """Like `time_calls`, but only `call(prepare(i))` is timed, not `prepare(i)`.

    For calls whose input must differ every time (location pings need a newer timestamp
    than the stored one) without charging the input's construction to the call.
    """
    for i in range(budget.warmup):
        call(prepare(i))
    samples = np.empty(budget.max_calls, dtype=np.int64)
    clock = time.perf_counter_ns
    deadline = clock() + int(budget.seconds * 1e9)
    n = 0
    while n < budget.max_calls:
        arg = prepare(budget.warmup + n)
        t0 = clock()
        call(arg)
        t1 = clock()
        samples[n] = t1 - t0
        n += 1
        if n >= budget.min_calls and t1 >= deadline:
            break
    return Timing.from_ns(samples[:n])


def ratio(baseline: float, candidate: float) -> float | None:
    """How many times faster the candidate is (> 1: faster); None when not measurable."""
    if candidate <= 0.0 or not math.isfinite(baseline) or not math.isfinite(candidate):
        return None
    return baseline / candidate


def unavailable(reason: str) -> dict[str, str]:
    """The record of a comparison that could not run: never a made-up number."""
    return {"status": "unavailable", "reason": reason}


# ------------------------------------------------------------------------ the Rust index


def build_index(core: Any, fleet: Fleet, now_ms: int) -> tuple[UnitIndex, npt.NDArray[np.int64]]:
    """A fresh UnitIndex with the fleet loaded (the build the benchmarks time)."""
    index: UnitIndex = core.UnitIndex()
    return index, load_into(index, fleet, now_ms)


# ------------------------------------------------------------------- the NumPy baseline


class NumpyBruteForce:
    """What a user without an index writes: NumPy over the whole fleet, per query.

    Per call it builds the eligibility mask (status, required capabilities as a bitmask),
    takes the haversine distance to every eligible unit and picks the top K with
    argpartition. It filters before the distance so rare-capability queries cost it less
    (the stronger of the two obvious ways to write it, so the ratio is not flattered).
    It ranks by great-circle distance only, a cheaper model than the engine's ETA plus
    cost terms, so the reported speedup is, if anything, conservative.

    The per-unit arrays it reads (radians, cos(lat)) are precomputed once, as a user would;
    statuses are read from the array each call since they change all the time.
    """

    def __init__(self, fleet: Fleet) -> None:
        self.lat_r = np.radians(fleet.lat)
        self.lon_r = np.radians(fleet.lon)
        self.cos_lat = np.cos(self.lat_r)
        self.status = fleet.status.copy()
        self.caps = fleet.cap_mask(CAPABILITIES)
        self._bit = {name: 1 << i for i, name in enumerate(CAPABILITIES)}

    def required_mask(self, required: Sequence[str]) -> np.uint64:
        return np.uint64(sum(self._bit[name] for name in required))

    def eligible(self, required: np.uint64) -> npt.NDArray[np.bool_]:
        mask: npt.NDArray[np.bool_] = self.status == AVAILABLE
        if required:
            mask &= (self.caps & required) == required
        return mask

    def top_k(
        self, lat: float, lon: float, required: np.uint64, k: int = K
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Indices (rows of the fleet) and distances in metres of the k nearest, nearest first."""
        idx = np.flatnonzero(self.eligible(required))
        if idx.size == 0:
            return idx, np.empty(0)
        lat0 = math.radians(lat)
        lon0 = math.radians(lon)
        dlat = self.lat_r[idx] - lat0
        dlon = self.lon_r[idx] - lon0
        a = np.sin(dlat * 0.5) ** 2 + math.cos(lat0) * self.cos_lat[idx] * np.sin(dlon * 0.5) ** 2
        dist = (2.0 * EARTH_RADIUS_M) * np.arcsin(np.sqrt(a))
        part = np.argpartition(dist, k)[:k] if idx.size > k else np.arange(idx.size)
        order = part[np.argsort(dist[part], kind="stable")]
        return idx[order], dist[order]

    def nbytes_per_unit(self) -> float:
        arrays = (self.lat_r, self.lon_r, self.cos_lat, self.status, self.caps)
        return sum(a.nbytes for a in arrays) / max(1, self.status.size)


# ----------------------------------------------------------------- Redis GEOSEARCH rival


class RedisGeo:
    """Redis GEO sets as a user would lay them out for dispatch.

    One sorted set per status (all units), plus one per (AVAILABLE, capability), since
    GEOSEARCH cannot filter on anything but position: a capability query then searches a
    small key instead of filtering a long nearest-first list client-side.

    Nearest-K with no known radius is an expanding search: one GEOSEARCH ... BYRADIUS ...
    ASC COUNT K per step, x4 the radius until K are found or all London is covered. The
    first radius is the one expected to hold ~2K members at the key's mean density, so a
    dense key answers in one round trip and a sparse (rare capability) key does not pay
    for steps that are bound to come back short. One search over a 100 km radius instead
    would make Redis sort every member of the key, every call.
    """

    #: Area the fleet is spread over (Greater London, ~1,570 km²), for the mean density.
    AREA_KM2 = 1_600.0
    MAX_RADIUS_KM = 128.0

    def __init__(self, prefix: str) -> None:
        import redis  # noqa: PLC0415 - optional dependency of the benchmarks only

        self.prefix = prefix
        self.client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
        self.client.ping()
        self._start_km: dict[str, float] = {}

    def _key(self, status: int, cap: str | None = None) -> str:
        return f"{self.prefix}:s{status}" + (f":c:{cap}" if cap else "")

    def load(self, fleet: Fleet) -> None:
        self.drop()
        groups: dict[str, list[float | str]] = {}
        for i, uid in enumerate(fleet.ids):
            status = int(fleet.status[i])
            keys = [self._key(status)]
            if status == AVAILABLE:
                keys += [self._key(status, cap) for cap in fleet.caps[i]]
            for key in keys:
                groups.setdefault(key, []).extend((float(fleet.lon[i]), float(fleet.lat[i]), uid))
        pipe = self.client.pipeline(transaction=False)
        chunk = 3 * 5_000  # lon, lat, member triples: 5k members per GEOADD
        for key, flat in groups.items():
            for start in range(0, len(flat), chunk):
                pipe.geoadd(key, flat[start : start + chunk])
            members = len(flat) // 3
            r = math.sqrt(2 * K * self.AREA_KM2 / (math.pi * members))
            self._start_km[key] = min(max(r, 0.5), self.MAX_RADIUS_KM)
        pipe.execute()

    def nearest(self, lat: float, lon: float, cap: str | None, k: int = K) -> list[Any]:
        key = self._key(AVAILABLE, cap)
        radius = self._start_km.get(key, 2.0)
        while True:
            found = cast(
                "list[Any]",
                self.client.geosearch(
                    key, longitude=lon, latitude=lat, radius=radius, unit="km",
                    sort="ASC", count=k, withdist=True,
                ),
            )  # fmt: skip
            if len(found) >= k or radius >= self.MAX_RADIUS_KM:
                return found
            radius = min(radius * 4.0, self.MAX_RADIUS_KM)

    def round_trip(self) -> object:
        """The floor of any query: one PING over the same connection."""
        return self.client.ping()

    def memory_bytes(self) -> int:
        total = 0
        for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1000):
            total += int(self.client.memory_usage(key, samples=0) or 0)
        return total

    def drop(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            self.client.unlink(*keys)

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------- PostGIS KNN rival


class PostgisKnn:
    """PostGIS nearest-neighbour: a geography column, a GiST index, `ORDER BY <-> LIMIT K`.

    Eligibility is a WHERE clause (status, capability bitmask), which the KNN index scan
    applies as it walks outward: the textbook query. The GiST index is partial, over
    AVAILABLE units only (as the Redis layout keys by status): with a full index the scan
    walks past the 80% of busy units, and the planner, misjudging the selectivity of
    `caps & x = x`, may even prefer a sequential scan and sort. The status is a literal in
    the SQL, not a parameter, so the prepared statement's generic plan can still match the
    partial index. Tables are named bench_* so they never collide with the journal's own.
    """

    QUERY = (
        "SELECT unit_id, ST_Distance(geog, q.p) FROM {table}, "
        "(SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography AS p) AS q "
        "WHERE status = {available} AND (caps & %(req)s) = %(req)s "
        "ORDER BY geog <-> q.p LIMIT %(k)s"
    )

    def __init__(self, table: str) -> None:
        import psycopg  # noqa: PLC0415 - optional dependency of the benchmarks only

        self.table = table
        self.conn = psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=3)
        try:
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.Error as exc:
            self.conn.close()
            raise RuntimeError(
                f"PostGIS extension not available ({exc}); run benchmarks/setup_services.sh"
            ) from exc
        self.version = str(self.conn.execute("SELECT postgis_lib_version()").fetchone())
        self._bit = {name: 1 << i for i, name in enumerate(CAPABILITIES)}
        self._sql = self.QUERY.format(table=table, available=AVAILABLE)

    def load(self, fleet: Fleet) -> None:
        t = self.table
        self.conn.execute(f"DROP TABLE IF EXISTS {t}")
        self.conn.execute(
            f"CREATE TABLE {t} (unit_id text PRIMARY KEY, agency smallint NOT NULL, "
            "status smallint NOT NULL, caps bigint NOT NULL, geog geography(Point, 4326))"
        )
        caps = fleet.cap_mask(CAPABILITIES)
        buf = io.StringIO()
        for i, uid in enumerate(fleet.ids):
            buf.write(
                f"{uid}\t{int(fleet.agency[i])}\t{int(fleet.status[i])}\t{int(caps[i])}\t"
                f"SRID=4326;POINT({float(fleet.lon[i])!r} {float(fleet.lat[i])!r})\n"
            )
        with (
            self.conn.cursor() as cur,
            cur.copy(f"COPY {t} (unit_id, agency, status, caps, geog) FROM STDIN") as copy,
        ):
            copy.write(buf.getvalue())
        # Built after the bulk load, as anyone loading a table would; ANALYZE so the
        # planner picks the KNN index scan from the first query.
        self.conn.execute(
            f"CREATE INDEX {t}_geog_available ON {t} USING gist (geog) WHERE status = {AVAILABLE}"
        )
        self.conn.execute(f"ANALYZE {t}")

    def nearest(self, lat: float, lon: float, cap: str | None, k: int = K) -> list[Any]:
        req = self._bit[cap] if cap else 0
        params = {"lat": lat, "lon": lon, "req": req, "k": k}
        # prepare=True: a server-side prepared statement, the fast path psycopg offers.
        return self.conn.execute(self._sql, params, prepare=True).fetchall()

    def round_trip(self) -> object:
        """The floor of any query: a prepared `SELECT 1` over the same connection."""
        return self.conn.execute("SELECT 1", prepare=True).fetchone()

    def plan(self) -> str:
        rows = self.conn.execute(
            "EXPLAIN " + self._sql, {"lat": 51.5, "lon": -0.1, "req": 0, "k": K}
        ).fetchall()
        return "\n".join(str(r[0]) for r in rows)

    def relation_bytes(self) -> int:
        row = self.conn.execute("SELECT pg_total_relation_size(%s::regclass)", (self.table,))
        got = row.fetchone()
        return int(got[0]) if got else 0

    def drop(self) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {self.table}")

    def close(self) -> None:
        self.conn.close()

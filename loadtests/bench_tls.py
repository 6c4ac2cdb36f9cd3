"""What mutual TLS and the audit trail cost: RecommendUnits on three servers in the same run.

    python -m loadtests.bench_tls [--units 10000] [--seconds 8]

Makes a development PKI (`dispatch_core.security.certs`) and starts three real servers
(`dispatch-core serve`, SQLite journal as deployed, no metrics): plaintext on loopback (every
caller the `local` admin) with the audit trail, the same with `--audit-trail off`, and one
with `--tls-cert/--tls-key/--client-ca` and the audit trail (the caller the `dev-admin`
certificate, authorized by a policy whose admin bucket never empties). Each gets the
identical fleet over gRPC (not timed). Then one client calls RecommendUnits (and the no-op
Ping) on the servers in turn, rotating which goes first every round, so all see the same
machine at the same moments. Connections are set up before timing: the figures are the
per-call cost of encryption, authentication and auditing, not of handshakes.

Writes bench-results/tls.json and bench-results/tls.md. The goals (mutual TLS ≤ 15 % added
at p50; the audit trail ≤ 10 %) are reported as met or not, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from dispatch_core.loadtest.procs import machine_info
from dispatch_core.loadtest.seeding import recommend_requests, seed_server
from dispatch_core.loadtest.server import Server
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.certs import write_dev_certs
from dispatch_core.synthetic.fleet import incident_points, make_fleet
from loadtests.bench_grpc import FLEET_SEED, POINTS_SEED, dist_us, ratio
from loadtests.bench_metrics import interleaved

GOAL_OVERHEAD = 1.15
GOAL_AUDIT = 1.10


class TransportServer(Server):
    """A benchmark server, plaintext or with mutual TLS from the PKI in `pki`."""

    def __init__(self, workdir: Path, pki: Path | None, *, audit: bool = True) -> None:
        self._pki = pki
        self._audit = audit
        super().__init__(workdir)

    def flags(self, help_text: str) -> list[str]:
        self.journalled = False
        flags = ["--metrics-port", "-1", "--audit-trail", "on" if self._audit else "off"]
        if self._pki is not None:
            flags += [
                "--tls-cert",
                str(self._pki / "server.crt"),
                "--tls-key",
                str(self._pki / "server.key"),
                "--client-ca",
                str(self._pki / "ca.crt"),
                "--policy",
                str(self._pki / "policy.toml"),
            ]
        return flags

    def channel(self) -> grpc.Channel:
        if self._pki is None:
            return grpc.insecure_channel(self.target)
        pki = self._pki
        credentials = grpc.ssl_channel_credentials(
            (pki / "ca.crt").read_bytes(),
            (pki / "admin.key").read_bytes(),
            (pki / "admin.crt").read_bytes(),
        )
        return grpc.secure_channel(self.target, credentials)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement per RPC type")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)

    fleet = make_fleet(args.units, seed=FLEET_SEED)
    lat, lon = incident_points(4096, seed=POINTS_SEED)
    reqs = recommend_requests(lat, lon)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        pki = Path(tmp) / "pki"
        write_dev_certs(pki, ("admin",))
        # The shipped policy's admin bucket (5,000/s) would refuse the seeding's bursts; a
        # bucket that never empties costs the same per call.
        (pki / "policy.toml").write_text(
            '[roles.admin]\nrpcs = ["*"]\nrate = 1e9\nburst = 1e9\n'
            '[principals]\n"dev-admin" = ["admin"]\n'
        )
        servers = {
            "plaintext": TransportServer(Path(tmp) / "plain", None),
            "no_audit": TransportServer(Path(tmp) / "noaudit", None, audit=False),
            "mutual_tls": TransportServer(Path(tmp) / "mtls", pki),
        }
        channels = {k: s.channel() for k, s in servers.items()}
        try:
            stubs = {k: pb_grpc.DispatchServiceStub(c) for k, c in channels.items()}
            now_ms = time.time_ns() // 1_000_000
            for name, server in servers.items():
                server.wait_serving(channels[name])
                report.setdefault("seeding", {})[name] = seed_server(stubs[name], fleet, now_ms)
            m = len(reqs)
            ping = pb.PingRequest()
            rec = interleaved(
                {k: (lambda i, s=s: s.RecommendUnits(reqs[i % m])) for k, s in stubs.items()},
                args.seconds,
                args.warmup,
            )
            pings = interleaved(
                {k: (lambda i, s=s: s.Ping(ping)) for k, s in stubs.items()},
                args.seconds / 2,
                args.warmup,
            )
        finally:
            for c in channels.values():
                c.close()
            for s in servers.values():
                s.stop()

    results: dict[str, Any] = {}
    for label, samples in (("RecommendUnits", rec), ("Ping", pings)):
        tls, plain = dist_us(samples["mutual_tls"]), dist_us(samples["plaintext"])
        bare = dist_us(samples["no_audit"])
        results[label] = {
            "mutual_tls": tls,
            "plaintext": plain,
            "no_audit": bare,
            "p50_ratio": ratio(tls["p50_us"], plain["p50_us"]),
            "p99_ratio": ratio(tls["p99_us"], plain["p99_us"]),
            "p50_added_us": tls["p50_us"] - plain["p50_us"],
            "audit_p50_ratio": ratio(plain["p50_us"], bare["p50_us"]),
            "audit_p50_added_us": plain["p50_us"] - bare["p50_us"],
        }
    report["results"] = results
    p50 = results["RecommendUnits"]["p50_ratio"]
    audit = results["RecommendUnits"]["audit_p50_ratio"]
    report["goal"] = {
        "max_ratio": GOAL_OVERHEAD,
        "p50_met": (p50 or 99) <= GOAL_OVERHEAD,
        "audit_max_ratio": GOAL_AUDIT,
        "audit_p50_met": (audit or 99) <= GOAL_AUDIT,
    }
    md = to_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tls.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "tls.md").write_text(md)
    print(md)
    return 0


def to_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        "# Mutual TLS and audit trail overhead",
        "",
        f"{r['settings']['units']} units, {r['settings']['seconds']} s per RPC type, calls "
        "rotating between a plaintext loopback server without the audit trail, one with it, "
        "and a mutual-TLS one with it (ECDSA P-256 certificates, TLS 1.3), SQLite journals. "
        f"{m['nproc']} cores ({m['cpu_model']}), load "
        f"{m['loadavg_1m_at_start']:.1f} at start, {m['time_utc']}.",
        "",
        "| RPC | server | n | p50 µs | p99 µs | mean µs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for rpc, res in r["results"].items():
        for side in ("no_audit", "plaintext", "mutual_tls"):
            d = res[side]
            lines.append(
                f"| {rpc} | {side.replace('_', ' ')} | {d['n']} | {d['p50_us']:.0f} | "
                f"{d['p99_us']:.0f} | {d['mean_us']:.0f} |"
            )
        lines.append(
            f"| {rpc} | **audit / no audit** (plaintext) | | **{res['audit_p50_ratio']:.3f}x**"
            " | | |"
        )
        lines.append(
            f"| {rpc} | **mTLS / plaintext** | | **{res['p50_ratio']:.3f}x** | "
            f"{res['p99_ratio']:.3f}x | |"
        )
    goal = r["goal"]
    lines += [
        "",
        f"Goal: RecommendUnits over mutual TLS ≤ {goal['max_ratio']:.2f}x plaintext at p50 "
        f"({'met' if goal['p50_met'] else 'NOT met'}); the audit trail ≤ "
        f"{goal['audit_max_ratio']:.2f}x without it at p50 "
        f"({'met' if goal['audit_p50_met'] else 'NOT met'}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

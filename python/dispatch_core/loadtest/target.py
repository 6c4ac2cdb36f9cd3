"""The server under test: started here with a temporary data directory, or given with
`--target` and checked before any load is sent.

A load test floods its target, so a non-loopback target needs `--allow-remote`; a target
that does not answer, or answers but is not dispatch-core, ends the run with one line.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from dispatch_core.loadtest.server import LoadtestServer
from dispatch_core.proto.dispatch.v1 import dispatch_pb2 as pb
from dispatch_core.proto.dispatch.v1 import dispatch_pb2_grpc as pb_grpc
from dispatch_core.security.client import ClientCredentials
from dispatch_core.service.servicer import SERVICE_NAME

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]
#: Seconds a given target has to answer the pre-flight checks.
PREFLIGHT_TIMEOUT_S = 5.0


class TargetError(Exception):
    """The target cannot be load-tested: the message is the one line the user sees."""


def split_target(target: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) as (host, port), or TargetError naming the problem."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"--target {target!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise TargetError(f"--target host {host!r} does not resolve: {exc}") from None
    return all(ipaddress.ip_address(str(i[4][0])).is_loopback for i in infos)


def preflight(channel: grpc.Channel, target: str) -> None:
    """Health says SERVING for dispatch.v1 and Ping answers, or TargetError."""
    try:
        grpc.channel_ready_future(channel).result(timeout=PREFLIGHT_TIMEOUT_S)
    except grpc.FutureTimeoutError:
        raise TargetError(
            f"{target} does not answer (nothing listening, or a firewall): no load was sent"
        ) from None
    health = health_pb2_grpc.HealthStub(channel)
    try:
        reply = health.Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=PREFLIGHT_TIMEOUT_S
        )
        stub = pb_grpc.DispatchServiceStub(channel)  # type: ignore[no-untyped-call]
        stub.Ping(pb.PingRequest(), timeout=PREFLIGHT_TIMEOUT_S)
    except grpc.RpcError as exc:
        code = exc.code()
        if code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND):
            raise TargetError(
                f"{target} is not a dispatch-core server ({SERVICE_NAME} is not served there)"
            ) from None
        raise TargetError(f"{target} refused the pre-flight check: {code.name}") from None
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        raise TargetError(f"{target} is not serving ({SERVICE_NAME} health: {status})")


def scrape(
    url: str, creds: ClientCredentials | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text endpoint, keyed by (name, sorted labels); over
    TLS with the run's CA and client certificate when the URL is https."""
    context = None
    if url.startswith("https:") and creds is not None:
        context = ssl.create_default_context(cafile=str(creds.ca) if creds.ca is not None else None)
        if creds.cert is not None and creds.key is not None:
            context.load_cert_chain(str(creds.cert), str(creds.key))
    with urllib.request.urlopen(url, timeout=10, context=context) as reply:
        text = reply.read().decode("utf-8")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


class Target:
    """The server a run measures: its address, pid where known and metrics URL."""

    def __init__(
        self,
        *,
        target: str | None,
        allow_remote: bool,
        journal: str,
        workdir: Path,
        server_pid: int | None = None,
        metrics_url: str | None = None,
        creds: ClientCredentials | None = None,
    ) -> None:
        self.server: LoadtestServer | None = None
        # --tls-ca/--tls-cert/--tls-key/--token: the run's identity towards a secured server.
        self.creds = creds or ClientCredentials()
        self.metrics_url = metrics_url
        if target:
            host, _ = split_target(target)
            self.remote = not is_loopback(host)
            if self.remote and not allow_remote:
                raise TargetError(
                    f"--target {target} is not a loopback address: a load test floods its "
                    "target; give --allow-remote to aim it at a staging server"
                )
            self.target = target
            self.pid = server_pid
            self.journal = "as configured on the target"
            self.how = "given with --target" + (
                f", pid {server_pid}" if server_pid else ", CPU/RSS from its metrics if given"
            )
        else:
            self.remote = False
            self.server = LoadtestServer(workdir / "server", journal=journal)
            self.target = self.server.target
            self.pid = self.server.pid
            self.journal = journal
            self.how = (
                f"started here: dispatch-core serve {' '.join(self.server.command_flags)}, "
                f"temporary data dir, pid {self.server.pid}"
            )
        self.channel = self.creds.channel(self.target, options=CHANNEL_OPTIONS)
        try:
            if self.server is not None:
                self.server.wait_serving(self.channel)
                self.metrics_url = self.server.metrics_url()
            else:
                preflight(self.channel, self.target)
        except BaseException:
            self.close()
            raise

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        """The server's metrics now, or None when it has no reachable metrics URL."""
        if self.metrics_url is None:
            return None
        try:
            return scrape(self.metrics_url, self.creds)
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def close(self) -> dict[str, Any]:
        self.channel.close()
        if self.server is None:
            return {}
        code = self.server.stop()
        text = self.server.log_path.read_text(encoding="utf-8", errors="replace")
        return {
            "exit_code": code,
            "log_tracebacks": text.count("Traceback"),
            "log_tail": self.server.log_tail(8),
        }

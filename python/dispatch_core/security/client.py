"""A client's side of transport security: the channel `demo` (and any Python client of
this package) opens to a plaintext or secured server."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc


@dataclass(frozen=True)
class ClientCredentials:
    """`--tls-ca` (the server's CA: TLS), `--tls-cert`/`--tls-key` (mutual TLS) and
    `--token` (a bearer JWT). None of them: a plaintext channel."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    token: str | None = None

    def channel(
        self, target: str, options: Sequence[tuple[str, Any]] | None = None
    ) -> grpc.Channel:
        if (self.cert is None) != (self.key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.ca is not None or self.cert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.ca.read_bytes() if self.ca is not None else None,
                private_key=self.key.read_bytes() if self.key is not None else None,
                certificate_chain=self.cert.read_bytes() if self.cert is not None else None,
            )
            channel = grpc.secure_channel(target, credentials, options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        if self.token:
            # An interceptor rather than call credentials: gRPC sends those only over
            # TLS, and a server behind a TLS-terminating proxy is reached in plaintext.
            channel = grpc.intercept_channel(channel, _BearerToken(self.token))
        return channel


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _add(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, proceed: Callable[..., Any], details: Any, request: Any) -> Any:
        return proceed(self._add(details), request)

    def intercept_unary_stream(
        self, proceed: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return proceed(self._add(details), request)

    def intercept_stream_unary(
        self, proceed: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return proceed(self._add(details), requests)

    def intercept_stream_stream(
        self, proceed: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return proceed(self._add(details), requests)

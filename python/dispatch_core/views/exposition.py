"""The Prometheus text exposition of a registry, rendered for cheap scrapes.

prometheus_client's `generate_latest` validates and escapes every label of every sample
on every scrape: about 650 samples here, most of them the buckets of the RPC histogram,
whose label sets never change. `render` formats each distinct (sample name, labels) prefix
once and keeps it, so a scrape costs a dictionary lookup and a number format per sample.
The output is the same text format (0.0.4), checked sample for sample against
`generate_latest` in tests/test_metrics.py. OpenMetrics, when a scraper asks for it, is
left to prometheus_client.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder
from prometheus_client.utils import floatToGoString

#: Prefixes kept at most; label sets are bounded by the metrics' design (methods x codes,
#: areas, grades), so this only guards against a label that is not.
MAX_PREFIXES = 50_000
#: gzip's fastest level: a scrape is small and frequent, latency matters more than bytes.
GZIP_LEVEL = 1

_prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

#: OpenMetrics type names as the text format spells them, and the sample name suffix.
_TYPE = {"info": ("gauge", "_info"), "stateset": ("gauge", ""), "unknown": ("untyped", "")}
_TYPE.update({"gaugehistogram": ("histogram", ""), "counter": ("counter", "_total")})
#: Samples the text format moves to the end of their family, as generate_latest does.
_TRAILING = ("_created", "_gsum", "_gcount")


def _escape_value(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _prefix(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _number(value: float) -> str:
    # The common case (a finite count or time) without floatToGoString's branches; it
    # decides the rest, so the spelling is always prometheus_client's.
    if value.__class__ is float and 0.0 <= value < 1e6:
        return repr(value)
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def render(registry: CollectorRegistry) -> bytes:
    """The registry's samples in the Prometheus text format 0.0.4."""
    out: list[str] = []
    prefixes = _prefixes
    if len(prefixes) > MAX_PREFIXES:
        prefixes.clear()
    for metric in registry.collect():
        mtype, suffix = _TYPE.get(metric.type, (metric.type, ""))
        family = metric.name + suffix
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {family} {doc}\n# TYPE {family} {mtype}\n")
        trailing: dict[str, list[str]] = {}
        for s in metric.samples:
            key = (s.name, tuple(s.labels.items()))
            prefix = prefixes.get(key)
            if prefix is None:
                prefix = prefixes[key] = _prefix(s.name, s.labels)
            stamp = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
            line = f"{prefix} {_number(s.value)}{stamp}\n"
            for end in _TRAILING:
                if s.name == metric.name + end:
                    trailing.setdefault(end, []).append(line)
                    break
            else:
                out.append(line)
        for end, lines in sorted(trailing.items()):
            out.append(f"# HELP {metric.name}{end} {doc}\n# TYPE {metric.name}{end} gauge\n")
            out.extend(lines)
    return "".join(out).encode("utf-8")


def wsgi_app(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    """/metrics as a WSGI application: `render`, gzipped when the scraper accepts it."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "OPTIONS":
            start_response("200 OK", [("Allow", "OPTIONS,GET")])
            return [b""]
        if environ.get("PATH_INFO", "/") == "/favicon.ico":
            start_response("200 OK", [])
            return [b""]
        accept = str(environ.get("HTTP_ACCEPT", ""))
        params = parse_qs(environ.get("QUERY_STRING", ""))
        encoder, content_type = choose_encoder(accept)
        if content_type == CONTENT_TYPE_LATEST and "name[]" not in params:
            body = render(registry)
        else:  # OpenMetrics or a name filter: prometheus_client's own path
            names = params.get("name[]")
            body = encoder(registry.restricted_registry(names) if names else registry)
        headers = [("Content-Type", content_type)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app

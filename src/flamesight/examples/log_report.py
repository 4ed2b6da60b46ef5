"""A small web-log report job: the program profiled for flamesight's bundled example.

It generates a day of synthetic access-log lines, parses them (regular
expressions and `datetime.strptime`), groups request latencies by endpoint,
computes percentiles, finds the slowest clients, and writes a compressed JSON
report. Its hot spots are the ones real log jobs have: timestamp parsing,
regular expressions, a quadratic de-duplication, and JSON encoding.

Regenerate the bundled profile (py-spy, sampling at 500 Hz) from the repository root with:
    .venv/bin/py-spy record --rate 500 -f speedscope -o src/flamesight/examples/log_report.speedscope.json -- .venv/bin/python src/flamesight/examples/log_report.py
"""

from __future__ import annotations

import json
import random
import re
import statistics
import zlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

LINE_COUNT = 60_000
ENDPOINTS = (
    "/api/orders",
    "/api/orders/{id}",
    "/api/users/{id}",
    "/api/search",
    "/static/app.js",
    "/static/app.css",
    "/health",
)
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/130.0",
    "curl/8.10.1",
    "python-requests/2.32.3",
)
LOG_LINE = re.compile(
    r'(?P<client>\d+\.\d+\.\d+\.\d+) - - \[(?P<when>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) '
    r'HTTP/1\.1" (?P<status>\d{3}) (?P<size>\d+) (?P<latency>\d+\.\d+) "(?P<agent>[^"]*)"'
)
ID_IN_PATH = re.compile(r"/\d+(?=/|$)")


@dataclass(frozen=True)
class Request:
    """One parsed access-log line."""

    client: str
    when: datetime
    method: str
    endpoint: str
    status: int
    size: int
    latency_ms: float
    agent: str


def generate_log(count: int, seed: int = 7) -> list[str]:
    """Synthetic access-log lines in the common log format plus latency and user agent."""
    rng = random.Random(seed)
    start = datetime(2024, 5, 14, 0, 0, 0)
    lines = []
    for index in range(count):
        when = start + timedelta(seconds=index * 86_400 / count)
        path = rng.choice(ENDPOINTS).replace("{id}", str(rng.randint(1, 50_000)))
        status = rng.choices((200, 304, 404, 500), weights=(90, 6, 3, 1))[0]
        latency = rng.lognormvariate(3.0, 0.8)
        client = f"10.0.{rng.randint(0, 7)}.{rng.randint(1, 254)}"
        lines.append(
            f'{client} - - [{when:%d/%b/%Y:%H:%M:%S} +0000] "GET {path} HTTP/1.1" '
            f'{status} {rng.randint(200, 90_000)} {latency:.3f} "{rng.choice(AGENTS)}"'
        )
    return lines


def parse_line(line: str) -> Request | None:
    """Parse one log line; None for a line that does not match."""
    match = LOG_LINE.match(line)
    if match is None:
        return None
    return Request(
        client=match["client"],
        when=datetime.strptime(match["when"], "%d/%b/%Y:%H:%M:%S %z"),
        method=match["method"],
        endpoint=ID_IN_PATH.sub("/{id}", match["path"]),
        status=int(match["status"]),
        size=int(match["size"]),
        latency_ms=float(match["latency"]),
        agent=match["agent"],
    )


def latency_by_endpoint(requests: list[Request]) -> dict[str, dict[str, float]]:
    """Request count and latency percentiles per endpoint."""
    latencies: dict[str, list[float]] = defaultdict(list)
    for request in requests:
        latencies[request.endpoint].append(request.latency_ms)
    report = {}
    for endpoint, values in sorted(latencies.items()):
        cuts = statistics.quantiles(values, n=100)
        report[endpoint] = {
            "requests": len(values),
            "mean_ms": statistics.fmean(values),
            "p50_ms": cuts[49],
            "p95_ms": cuts[94],
            "p99_ms": cuts[98],
        }
    return report


def distinct_clients(requests: list[Request]) -> list[str]:
    """Clients in order of first appearance (a list scan per request: the slow way)."""
    seen: list[str] = []
    for request in requests:
        if request.client not in seen:
            seen.append(request.client)
    return seen


def slowest_clients(requests: list[Request], clients: list[str], count: int = 10) -> list[dict]:
    """The clients with the highest mean latency."""
    totals: dict[str, list[float]] = {client: [] for client in clients}
    for request in requests:
        totals[request.client].append(request.latency_ms)
    ranked = sorted(totals.items(), key=lambda item: statistics.fmean(item[1]), reverse=True)
    return [
        {"client": client, "mean_ms": statistics.fmean(values)} for client, values in ranked[:count]
    ]


def errors_per_hour(requests: list[Request]) -> dict[str, int]:
    """Server errors (5xx) per hour of the day."""
    counts: dict[str, int] = defaultdict(int)
    for request in requests:
        if request.status >= 500:
            counts[request.when.strftime("%H:00")] += 1
    return dict(sorted(counts.items()))


def build_report(lines: list[str]) -> bytes:
    """Parse the log and return the compressed JSON report."""
    requests = [request for line in lines if (request := parse_line(line)) is not None]
    clients = distinct_clients(requests)
    report = {
        "requests": len(requests),
        "clients": len(clients),
        "endpoints": latency_by_endpoint(requests),
        "slowest_clients": slowest_clients(requests, clients),
        "errors_per_hour": errors_per_hour(requests),
        "requests_detail": [
            {"client": r.client, "when": r.when.isoformat(), "path": r.endpoint, "ms": r.latency_ms}
            for r in requests
        ],
    }
    return zlib.compress(json.dumps(report, indent=2).encode(), level=9)


def main() -> None:
    """Generate the log, build the report and print its size."""
    lines = generate_log(LINE_COUNT)
    report = build_report(lines)
    print(f"{len(lines):,} log lines -> {len(report):,} bytes of compressed report")


if __name__ == "__main__":
    main()

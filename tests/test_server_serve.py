"""`flamesight serve` as a real process on a loopback port, and its refusal of other hosts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from flamesight import examples
from flamesight.cli import main

FLAMESIGHT = Path(sys.executable).with_name("flamesight")
START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_line(process: subprocess.Popen[str], needle: str) -> str:
    """The first stdout line of `process` containing `needle` (fails if it exits first)."""
    assert process.stdout is not None
    for line in process.stdout:
        if needle in line:
            return line
    raise AssertionError(f"the server exited ({process.wait()}) before printing {needle!r}")


def stop(process: subprocess.Popen[str]) -> None:
    """Stop a server process: terminate, then kill if it does not exit in time."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_serve_answers_on_a_loopback_port_and_opens_a_file(tmp_path: Path) -> None:
    port = free_port()
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("FLAMESIGHT_DATABASE_URL", None)
    process = subprocess.Popen(
        [
            str(FLAMESIGHT),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            "--storage-url",
            (tmp_path / "blobs").as_uri(),
            "--open",
            str(examples.path()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    try:
        line = wait_for_line(process, "/api/traces/")
        url = line.split(": ", 1)[1].strip()
        assert url.startswith(f"http://127.0.0.1:{port}/api/traces/")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                listing = httpx.get(f"http://127.0.0.1:{port}/api/traces", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start listening"
                assert process.poll() is None, "the server exited"
                time.sleep(0.2)
        assert listing.status_code == 200
        traces = listing.json()["traces"]
        assert [trace["name"] for trace in traces] == [examples.path().name]
        assert httpx.get(url, timeout=5).json()["id"] == traces[0]["id"]
        assert (tmp_path / "data" / "flamesight.db").is_file()
        stored = [path for path in (tmp_path / "blobs").rglob("*") if path.is_file()]
        assert [path.name for path in stored] == [traces[0]["id"]]
    finally:
        stop(process)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3:///flamesight", "s3://bucket/prefix"),
        ("file://server/share", "absolute local folder"),
        ("https://example.com/blobs", "file:///path"),
    ],
)
def test_serve_refuses_storage_urls_it_cannot_use(url: str, says: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path), "--storage-url", url])
    assert result.exit_code == 2
    assert says in result.output
    assert not (tmp_path / "flamesight.db").exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.com"])
def test_serve_refuses_a_network_address(host: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--host", host, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "loopback" in result.output
    assert "flamesight users add" in result.output
    assert not (tmp_path / "flamesight.db").exists()

"""The browser app in a real Chromium against a real `flamesight serve` on loopback.

Playwright drives Debian's Chromium (`/usr/bin/chromium`, never a downloaded
browser). Screenshots of every view go to test-artifacts/; the frame times
measured while panning a 1 M-sample profile are printed and written there
too (no timed assertion: speed is reported, not tested).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flamesight import examples
from flamesight.analysis import top_functions
from flamesight.formats import load
from flamesight.model import format_value

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
FLAMESIGHT = Path(sys.executable).with_name("flamesight")
START_TIMEOUT = 60.0
AXIS_HEIGHT = 22
ROW_HEIGHT = 18
VIEWPORT = {"width": 1400, "height": 900}

if not CHROMIUM.exists():
    pytest.skip(
        "the browser tests need Debian's Chromium at /usr/bin/chromium: "
        "run `make test` as root, or `apt-get install chromium`",
        allow_module_level=True,
    )


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(data_dir: Path) -> Iterator[str]:
    """A `flamesight serve` process on a free loopback port with `data_dir`; its base URL."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("FLAMESIGHT_DATABASE_URL", None)
    log = (data_dir.parent / "server.log").open("w")
    process = subprocess.Popen(
        [str(FLAMESIGHT), "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(f"{url}/api/prompts", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start listening"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `flamesight serve` process with an empty data dir; its base URL."""
    with running_server(tmp_path_factory.mktemp("web") / "data") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def fresh_page(browser: Any) -> Iterator[Any]:
    """A page in a new browser context (no cookies); errors in the page fail the test."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], f"errors in the page: {errors}"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with fresh_page(browser) as opened:
        yield opened


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def wait_for_viewer(page: Any, timeout: float = 60_000) -> None:
    page.wait_for_selector("#viewer-page[data-ready=true]", timeout=timeout)
    page.wait_for_function("window.__flamesightFrameTimes.length > 0", timeout=timeout)
    settle(page)


def settle(page: Any) -> None:
    """Wait until the page has drawn what it was asked to (two animation frames)."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def range_text(page: Any) -> str:
    return page.text_content("#range-text") or ""


PIXELS_JS = """([id, x, y, w, h]) => {
  const canvas = document.getElementById(id);
  const ratio = canvas.width / canvas.getBoundingClientRect().width;
  const data = canvas.getContext('2d').getImageData(
    Math.round(x * ratio), Math.round(y * ratio), Math.round(w * ratio), Math.round(h * ratio)).data;
  const bg = getComputedStyle(document.documentElement).getPropertyValue('--canvas-bg').trim();
  const probe = document.createElement('canvas').getContext('2d');
  probe.fillStyle = bg; probe.fillRect(0, 0, 1, 1);
  const [r0, g0, b0] = probe.getImageData(0, 0, 1, 1).data;
  let painted = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] !== r0 || data[i + 1] !== g0 || data[i + 2] !== b0) painted++;
  }
  return {painted, total: data.length / 4};
}"""


def painted(page: Any, canvas: str, x: float, y: float, width: float, height: float) -> float:
    """The share of the canvas area's pixels that are not the background."""
    found = page.evaluate(PIXELS_JS, [canvas, x, y, width, height])
    return found["painted"] / max(found["total"], 1)


def pixel(page: Any, canvas: str, x: float, y: float) -> list[int]:
    return page.evaluate(
        """([id, x, y]) => {
          const canvas = document.getElementById(id);
          const ratio = canvas.width / canvas.getBoundingClientRect().width;
          return Array.from(canvas.getContext('2d').getImageData(
            Math.round(x * ratio), Math.round(y * ratio), 1, 1).data.slice(0, 3));
        }""",
        [canvas, x, y],
    )


def chart_box(page: Any) -> dict[str, float]:
    return page.locator("#chart").bounding_box()


def trace_ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("#trace-table tbody tr", "rows => rows.map(r => r.dataset.id)")


def upload_through_page(page: Any, server: str, path: Path) -> None:
    page.goto(f"{server}/")
    page.wait_for_selector("#traces-page:not([hidden])")
    page.set_input_files("#file-input", str(path))
    wait_for_viewer(page)


def test_upload_view_zoom_select_search_and_sandwich(page: Any, server: str) -> None:
    example = examples.path()
    profile = load(example).active
    full = profile.end - profile.start
    upload_through_page(page, server, example)
    assert page.text_content("#trace-name") == example.name

    # The flame chart is painted: the root row spans the width, deeper rows have frames.
    box = chart_box(page)
    width = box["width"]
    assert painted(page, "chart", 0, AXIS_HEIGHT, width, ROW_HEIGHT - 2) > 0.9
    assert painted(page, "chart", 0, AXIS_HEIGHT, width, 10 * ROW_HEIGHT) > 0.3
    assert painted(page, "chart", 0, AXIS_HEIGHT + 36 * ROW_HEIGHT, width, 2 * ROW_HEIGHT) == 0
    assert painted(page, "overview", 0, 0, width, 40) > 0.05
    screenshot(page, "viewer-flamechart")

    # The toolbar shows the selection (the visible range) and the whole, in the unit.
    unit = profile.unit
    assert range_text(page) == f"{format_value(full, unit)} of {format_value(full, unit)}"
    page.keyboard.press("+")
    settle(page)
    assert range_text(page) == f"{format_value(full / 2, unit)} of {format_value(full, unit)}"
    page.keyboard.press("+")
    settle(page)
    assert range_text(page) == f"{format_value(full / 4, unit)} of {format_value(full, unit)}"
    page.keyboard.press("-")
    settle(page)
    assert range_text(page) == f"{format_value(full / 2, unit)} of {format_value(full, unit)}"
    # Arrow keys pan: the range moves, its length stays.
    before = page.evaluate("window.__flamesightViewer.chartView.x0")
    page.keyboard.press("ArrowRight")
    settle(page)
    after = page.evaluate("window.__flamesightViewer.chartView.x0")
    assert after == pytest.approx(before + 0.1 * full / 2)
    assert range_text(page) == f"{format_value(full / 2, unit)} of {format_value(full, unit)}"
    # 0 resets; the wheel zooms around the pointer.
    page.keyboard.press("0")
    settle(page)
    assert range_text(page) == f"{format_value(full, unit)} of {format_value(full, unit)}"
    page.mouse.move(box["x"] + width / 3, box["y"] + 200)
    page.mouse.wheel(0, -100)
    settle(page)
    zoomed = full / math.exp(0.2)
    assert range_text(page) == f"{format_value(zoomed, unit)} of {format_value(full, unit)}"
    page.keyboard.press("0")
    settle(page)

    # Dragging on the time axis selects exactly the range under the drag.
    left, right = 200, 700
    page.mouse.move(box["x"] + left, box["y"] + 8)
    page.mouse.down()
    page.mouse.move(box["x"] + 450, box["y"] + 8, steps=4)
    page.mouse.move(box["x"] + right, box["y"] + 8, steps=4)
    page.mouse.up()
    settle(page)
    view = page.evaluate("({...window.__flamesightViewer.chartView})")
    assert view["x0"] == pytest.approx(profile.start + left / width * full)
    assert view["x1"] == pytest.approx(profile.start + right / width * full)
    selected = view["x1"] - view["x0"]
    assert range_text(page) == f"{format_value(selected, unit)} of {format_value(full, unit)}"
    page.keyboard.press("0")
    settle(page)

    # Hovering the root frame shows its name, place, self and total with percentages.
    page.mouse.move(box["x"] + width / 2, box["y"] + AXIS_HEIGHT + ROW_HEIGHT / 2)
    page.wait_for_selector("#tooltip:not([hidden])")
    tip = page.text_content("#tooltip") or ""
    root_frame = profile.frames[int(profile.stacks.frame[0])]
    assert root_frame.name in tip
    assert "self " in tip and "total " in tip and "%" in tip
    if root_frame.file:
        assert root_frame.file in tip

    # Search dims everything but the matches.
    top_self = top_functions(profile, "self", 5).functions
    heaviest = top_self[0].name
    root_colour = pixel(page, "chart", width / 2, AXIS_HEIGHT + 5)
    page.fill("#search", heaviest)
    settle(page)
    assert page.text_content("#search-count") == "1 function"
    dimmed = pixel(page, "chart", width / 2, AXIS_HEIGHT + 5)
    assert dimmed != root_colour
    found = page.evaluate(
        """(name) => {
          const v = window.__flamesightViewer, chart = v.chart;
          for (let r = 0; r < chart.rows.length; r++) {
            const row = chart.rows[r];
            for (let i = 0; i < row.length; i++) {
              if (v.functions.names[row.fn[i]] !== name) continue;
              const scale = chart.cssWidth / (chart.x1 - chart.x0);
              const w = (row.end[i] - row.start[i]) * scale;
              if (w > 20) return {x: (row.start[i] - chart.x0) * scale + w / 2, y: chart.rowY(r) + 5};
            }
          }
          return null;
        }""",
        heaviest,
    )
    assert found is not None
    match_colour = pixel(page, "chart", found["x"], found["y"])
    assert match_colour != dimmed
    screenshot(page, "viewer-search")
    page.fill("#search", "")

    # The flame graph of the selected range.
    page.click("[data-view=flamegraph]")
    settle(page)
    assert page.get_attribute("#viewer-page", "data-view") == "flamegraph"
    assert painted(page, "chart", 0, 0, width, ROW_HEIGHT - 2) > 0.95
    screenshot(page, "viewer-flamegraph")

    # The sandwich: sorted by self, the heaviest first; its callers and callees drawn.
    page.click("[data-view=sandwich]")
    page.click("#sandwich-table th[data-sort=self]")
    rows = page.eval_on_selector_all(
        "#sandwich-table tbody tr",
        "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))",
    )
    assert [row[4] for row in rows[:3]] == [f.name for f in top_self[:3]]
    assert rows[0][0] == format_value(top_self[0].self, unit)
    page.click("#sandwich-table tbody tr >> nth=0")
    settle(page)
    assert page.is_visible("#callers") and page.is_visible("#callees")
    callers_width = page.locator("#callers").bounding_box()["width"]
    assert painted(page, "callees", 0, 0, callers_width, ROW_HEIGHT - 2) > 0.9
    assert painted(page, "callers", 0, 0, callers_width, 2 * ROW_HEIGHT) > 0.3
    screenshot(page, "viewer-sandwich")

    # The dark theme repaints the canvases in its colours.
    page.click("[data-view=flamechart]")
    page.click("#theme-toggle")
    settle(page)
    background = pixel(page, "chart", width - 2, box["height"] - 2)
    assert sum(background) < 3 * 60
    screenshot(page, "viewer-dark")
    page.click("#theme-toggle")


def test_a_corrupt_file_shows_the_reason_and_keeps_the_list(page: Any, server: str) -> None:
    httpx.post(
        f"{server}/api/traces",
        content=examples.path().read_bytes(),
        headers={"Content-Disposition": 'attachment; filename="kept.json"'},
        timeout=30,
    ).raise_for_status()
    page.goto(f"{server}/")
    page.wait_for_selector("#trace-table tbody tr")
    listed = trace_ids(page)
    broken = b'{"$schema": "https://www.speedscope.app/file-format-schema.json", "profiles": [oops'
    reason = httpx.post(f"{server}/api/traces", content=broken, timeout=30).json()["error"]
    page.set_input_files(
        "#file-input",
        files=[{"name": "broken.json", "mimeType": "application/json", "buffer": broken}],
    )
    page.wait_for_selector("#upload-error:not([hidden])")
    message = page.text_content("#upload-error") or ""
    assert "broken.json" in message
    assert reason["message"] in message
    assert trace_ids(page) == listed
    assert trace_ids(page) == [t["id"] for t in httpx.get(f"{server}/api/traces").json()["traces"]]
    screenshot(page, "traces-rejected-upload")


def test_layout_mode_draws_server_viewports(page: Any, server: str) -> None:
    created = httpx.post(
        f"{server}/api/traces",
        content=examples.path().read_bytes(),
        headers={"Content-Disposition": 'attachment; filename="layout.json"'},
        timeout=30,
    ).json()
    page.goto(f"{server}/#/traces/{created['id']}?max_samples=0")
    wait_for_viewer(page)
    assert page.is_visible("#mode-note")
    page.wait_for_function("window.__flamesightViewer.remoteChart !== null")
    settle(page)
    width = chart_box(page)["width"]
    assert painted(page, "chart", 0, AXIS_HEIGHT, width, ROW_HEIGHT - 2) > 0.9
    page.keyboard.press("+")
    page.wait_for_function(
        "window.__flamesightViewer.remoteChart && window.__flamesightViewer.layoutSerial > 1"
    )
    settle(page)
    assert painted(page, "chart", 0, AXIS_HEIGHT, width, ROW_HEIGHT - 2) > 0.9
    screenshot(page, "viewer-layout-mode")


def big_profile(samples: int, seed: int = 7) -> bytes:
    """A speedscope file of `samples` samples over 2,000 stacks up to 24 frames deep."""
    rng = random.Random(seed)
    frames = [
        {"name": f"function_{i}", "file": f"module_{i % 23}.py", "line": 10 + i} for i in range(400)
    ]
    stacks = []
    for _ in range(2000):
        depth = rng.randint(3, 24)
        stacks.append([0, 1 + rng.randrange(5)] + [rng.randrange(6, 400) for _ in range(depth - 2)])
    order: list[int] = []
    current = 0
    while len(order) < samples:
        order.extend([current] * rng.randint(1, 6))
        current = rng.randrange(len(stacks))
    del order[samples:]
    document = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": "generated",
                "unit": "microseconds",
                "startValue": 0,
                "endValue": samples * 10,
                "samples": [stacks[i] for i in order],
                "weights": [10] * samples,
            }
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def test_frame_times_while_panning_a_million_samples(page: Any, server: str) -> None:
    samples = 1_000_000
    created = httpx.post(
        f"{server}/api/traces?name=million.speedscope.json",
        content=big_profile(samples),
        timeout=180,
    )
    assert created.status_code == 201, created.text
    trace = created.json()
    assert trace["profiles"][0]["samples"] == samples
    page.goto(f"{server}/#/traces/{trace['id']}")
    wait_for_viewer(page, timeout=180_000)
    box = chart_box(page)
    assert painted(page, "chart", 0, AXIS_HEIGHT, box["width"], ROW_HEIGHT - 2) > 0.9
    measured: dict[str, dict[str, float]] = {}
    for label, zoom in (("whole profile", 0), ("zoomed 8x", 3)):
        page.keyboard.press("0")
        for _ in range(zoom):
            page.keyboard.press("+")
        settle(page)
        page.evaluate("window.__flamesightFrameTimes.length = 0")
        y = box["y"] + box["height"] / 2
        for sweep in range(3):
            direction = 1 if sweep % 2 == 0 else -1
            start_x = box["x"] + box["width"] / 2 - direction * 300
            page.mouse.move(start_x, y)
            page.mouse.down()
            page.mouse.move(start_x + direction * 600, y, steps=40)
            page.mouse.up()
            settle(page)
        for _ in range(20):
            page.keyboard.press("ArrowRight")
            settle(page)
        times = page.evaluate("window.__flamesightFrameTimes.slice()")
        assert len(times) >= 40
        measured[label] = {
            "frames": len(times),
            "p50_ms": round(percentile(times, 0.5), 3),
            "p95_ms": round(percentile(times, 0.95), 3),
            "max_ms": round(max(times), 3),
        }
        print(
            f"frame time panning {samples:,} samples, {label}: "
            f"p50 {measured[label]['p50_ms']:.2f} ms, p95 {measured[label]['p95_ms']:.2f} ms "
            f"over {len(times)} frames"
        )
    screenshot(page, "viewer-million-samples")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "viewer-frame-times.json").write_text(
        json.dumps({"samples": samples, "panning": measured}, indent=2) + "\n"
    )


def test_viewer_document_and_layout_endpoints(server: str) -> None:
    import numpy as np

    data = examples.path().read_bytes()
    trace = httpx.post(f"{server}/api/traces?name=doc.json", content=data, timeout=30).json()
    answer = httpx.get(f"{server}/api/traces/{trace['id']}/viewer", timeout=30)
    assert answer.headers["content-type"] == "application/x-flamesight-viewer"
    body = answer.content
    assert body[:4] == b"FSV1"
    length = int.from_bytes(body[4:8], "little")
    assert (8 + length) % 8 == 0
    header = json.loads(body[8 : 8 + length])
    assert header["mode"] == "samples"
    profile = load(data).active
    base = 8 + length
    for name, column in (
        ("sample_time", profile.samples.time),
        ("sample_weight", profile.samples.weight),
        ("sample_stack", profile.samples.stack),
        ("stack_parent", profile.stacks.parent),
        ("stack_frame", profile.stacks.frame),
        ("frame_line", profile.frames.line),
    ):
        described = header["arrays"][name]
        assert described["offset"] % 8 == 0
        dtype = "<f8" if described["dtype"] == "float64" else "<i4"
        decoded = np.frombuffer(body, dtype, described["length"], base + described["offset"])
        assert np.array_equal(decoded, column)
    assert header["frames"]["names"] == list(profile.frames.name)
    layout_only = httpx.get(f"{server}/api/traces/{trace['id']}/viewer?max_samples=10", timeout=30)
    small = layout_only.content
    small_header = json.loads(small[8 : 8 + int.from_bytes(small[4:8], "little")])
    assert small_header["mode"] == "layout"
    assert small_header["arrays"] == {}
    layout = httpx.get(
        f"{server}/api/traces/{trace['id']}/layout",
        params={"view": "flamechart", "width": 200, "start_depth": 1, "levels": 3},
        timeout=30,
    ).json()
    assert set(layout["depth"]) <= {1, 2, 3}
    assert layout["rows"] <= 3
    assert all(f >= 0 or m > 1 for f, m in zip(layout["function"], layout["merged"], strict=True))
    assert httpx.get(f"{server}/").text.startswith("<!doctype html>")

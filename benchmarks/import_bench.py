"""Import speed and memory: `load` + `top_functions` on large generated profiles.

Generates the inputs listed in `import_inputs.py` (one large profile per format,
all describing one generated program) into benchmarks/data/ (git-ignored;
reused when present).

Each input is then measured in a fresh Python process, so that peak RSS is
per input: the child imports flamesight and every importer, resets its peak
RSS to the current RSS and records that as the baseline, then times
`load(path)` and `top_functions` of the active profile. On Linux the peak is
the process's `VmHWM` (reset by writing 5 to `/proc/self/clear_refs`), not
`getrusage().ru_maxrss`: Linux carries `ru_maxrss` over from the parent
across fork and exec, so a child started after this script generated an
input (and grew to a few hundred MB doing it) reported the parent's peak as
its own baseline and almost no growth. Elsewhere `ru_maxrss` is used.

The table shows the file size on disk and the size of the data the
importer reads (the same unless the file is compressed), the wall-clock and
CPU seconds of the run (on a busy machine the CPU time is the steadier
figure), throughput on the data size (wall clock), the peak RSS, the peak
above the baseline, and that growth over the data size.

    .venv/bin/python benchmarks/import_bench.py                 # everything, full size
    .venv/bin/python benchmarks/import_bench.py --scale 0.1     # a tenth of the size, quick
    .venv/bin/python benchmarks/import_bench.py --only pprof --repeat 3
    .venv/bin/python benchmarks/import_bench.py --only pprof --baseline-src /tmp/old/src

Targets (issue 2): >= 50 MB/s on every input, peak RSS <= 2x the file size.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from import_inputs import DATA_DIR, INPUTS, MB

TARGET_MB_PER_SECOND = 50.0
TARGET_RSS_RATIO = 2.0


PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Make the current RSS this process's peak, where the system allows it (Linux)."""
    try:
        PROC_CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def rss_bytes(field: str, reset: bool) -> int:
    """The current ("VmRSS") or peak ("VmHWM") RSS of this process; `ru_maxrss` if not `reset`."""
    if reset:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(path: Path) -> dict[str, object]:
    """In this (fresh) process: time `load` + `top_functions`, and the RSS it took."""
    from flamesight.analysis import top_functions
    from flamesight.formats import format_modules, load

    format_modules()
    reset = reset_peak_rss()
    baseline = rss_bytes("VmRSS", reset)
    began, began_cpu = time.perf_counter(), time.process_time()
    group = load(path)
    top = top_functions(group.active, n=20)
    seconds, cpu_seconds = time.perf_counter() - began, time.process_time() - began_cpu
    peak = rss_bytes("VmHWM", reset)
    data = path.read_bytes()
    data_bytes = len(gzip.decompress(data)) if data.startswith(b"\x1f\x8b") else len(data)
    return {
        "format": group.format,
        "profiles": len(group.profiles),
        "samples": sum(len(p.samples) for p in group.profiles),
        "frames": sum(len(p.frames) for p in group.profiles),
        "top": top.functions[0].name if top.functions else None,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "file_bytes": path.stat().st_size,
        "data_bytes": data_bytes,
        "baseline_bytes": baseline,
        "peak_bytes": peak,
    }


def measure_in_child(path: Path, source: Path | None = None) -> dict[str, object]:
    """Run `measure` in a new interpreter (importing flamesight from `source`, a `src`
    folder, if given) and return what it printed."""
    completed = subprocess.run(
        [sys.executable, __file__, "--measure", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=None if source is None else {**os.environ, "PYTHONPATH": str(source)},
    )
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def table_row(name: str, result: dict[str, object]) -> str:
    """One Markdown table row of the results."""
    if "error" in result:
        return f"| {name} | {result['error']} |" + " |" * 9
    data_mb = result["data_bytes"] / MB
    rate = data_mb / result["seconds"]
    peak_mb = result["peak_bytes"] / MB
    grown_mb = (result["peak_bytes"] - result["baseline_bytes"]) / MB
    ratio = grown_mb / data_mb
    file_mb = result["file_bytes"] / MB
    rate_mark = "" if rate >= TARGET_MB_PER_SECOND else " ✗"
    ratio_mark = "" if ratio <= TARGET_RSS_RATIO else " ✗"
    return (
        f"| {name} | {file_mb:,.1f} | {data_mb:,.1f} | {result['samples']:,} | "
        f"{result['seconds']:.2f} | {result['cpu_seconds']:.2f} | {rate:,.1f}{rate_mark} | "
        f"{peak_mb:,.0f} | {grown_mb:,.0f} | "
        f"{ratio:.2f}{ratio_mark} |"
    )


TABLE_HEADER = (
    "| input | file MB | data MB | samples | load+top s | CPU s | MB/s | peak RSS MB | RSS growth MB | growth / data |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def main() -> None:
    """Generate what is missing, measure each input in its own process, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=[i.name for i in INPUTS],
        help="run this input only (repeatable)",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="size factor, e.g. 0.1 for a quick run"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per input; the fastest is shown"
    )
    parser.add_argument(
        "--regenerate", action="store_true", help="rebuild the inputs even when present"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also measure with the flamesight package of this src folder (say, an older "
        "checkout), its runs and the current tree's taking turns",
    )
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    chosen = [i for i in INPUTS if not args.only or i.name in args.only]
    rows = []
    for bench_input in chosen:
        path = bench_input.path(args.scale)
        if args.regenerate or not path.exists():
            print(f"generating {path.name} ...", file=sys.stderr, flush=True)
            began = time.perf_counter()
            try:
                bench_input.write(path, args.scale)
            except ImportError as error:
                rows.append(table_row(bench_input.name, {"error": f"cannot generate: {error}"}))
                continue
            print(
                f"  {path.stat().st_size / MB:,.1f} MB in {time.perf_counter() - began:.1f} s",
                file=sys.stderr,
            )
        sources = [args.baseline_src, None] if args.baseline_src else [None]
        runs: dict[Path | None, list[dict[str, object]]] = {source: [] for source in sources}
        for _ in range(max(1, args.repeat)):
            for source in sources:
                runs[source].append(measure_in_child(path, source))
        for source in sources:
            good = [r for r in runs[source] if "error" not in r]
            result = min(good, key=lambda r: r["seconds"]) if good else runs[source][0]
            name = bench_input.name if source is None else f"{bench_input.name} ({source})"
            rows.append(table_row(name, result))
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"\nscale {args.scale:g}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
        f"targets: >= {TARGET_MB_PER_SECOND:g} MB/s, RSS growth <= {TARGET_RSS_RATIO:g}x the data\n"
    )
    print(TABLE_HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()

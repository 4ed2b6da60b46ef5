"""Import speed and memory: `load` + `top_functions` on large generated profiles.

Generates four inputs into benchmarks/data/ (git-ignored; reused when present):

- collapsed stacks, 100 MB (py-spy style frames, "name (file:line)");
- a Chrome/Node `.cpuprofile` with 1 M samples;
- a Chrome trace (JSON object) with 2 M `B`/`E` events, about 200 MB;
- a pprof `.pb.gz` with 1 M samples (CPU: samples/count and cpu/nanoseconds).

All four walk one generated program: 3,000 functions in 40 classes, each
calling a few others with a skew towards the first, stacks 10-40 deep with
direct and mutual recursion, samples drawn with a Zipf skew over a pool of
distinct stacks.

Each input is then measured in a fresh Python process, so that peak RSS
(`getrusage(RUSAGE_SELF).ru_maxrss`) is per input: the child imports
flamesight and every importer, records its RSS as the baseline, then times
`load(path)` and `top_functions` of the active profile. The table shows the
file size on disk and the size of the data the importer reads (the same
unless the file is compressed), throughput on the data size, the peak RSS,
the peak above the baseline, and that growth over the data size.

    .venv/bin/python benchmarks/import_bench.py                 # everything, full size
    .venv/bin/python benchmarks/import_bench.py --scale 0.1     # a tenth of the size, quick
    .venv/bin/python benchmarks/import_bench.py --only pprof --repeat 3

Targets (issue 2): >= 50 MB/s on every input, peak RSS <= 2x the file size.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

DATA_DIR = Path(__file__).resolve().parent / "data"
MB = 1_000_000

TARGET_MB_PER_SECOND = 50.0
TARGET_RSS_RATIO = 2.0

CLASSES = [
    "Parser", "Lexer", "Renderer", "Layout", "Style", "Cache", "Index", "Table", "Query", "Planner",
    "Executor", "Buffer", "Stream", "Reader", "Writer", "Encoder", "Decoder", "Scheduler", "Worker", "Pool",
    "Router", "Handler", "Session", "Request", "Response", "Template", "Compiler", "Optimizer", "Visitor", "Tree",
    "Node", "Graph", "Matcher", "Sorter", "Merger", "Logger", "Config", "Loader", "Store", "Client",
]  # fmt: skip
VERBS = [
    "get", "set", "parse", "load", "render", "compute", "update", "handle", "read", "write",
    "build", "visit", "resolve", "emit", "flush", "encode", "decode", "match", "sort", "merge",
]  # fmt: skip
NOUNS = [
    "node", "tree", "buffer", "token", "request", "frame", "record", "index", "cache", "table",
    "row", "block", "event", "value", "item", "path", "query", "chunk", "layout", "style",
]  # fmt: skip


@dataclass(frozen=True)
class Program:
    """A generated program: functions with a file and line, and whom each calls."""

    names: list[str]
    files: list[str]
    lines: list[int]
    callees: list[list[int]]


def generated_program(rng: random.Random, functions: int = 3000) -> Program:
    """`functions` distinct methods; each calls 2-6 others, mostly ones defined after it."""
    chosen: set[tuple[str, str, str]] = set()
    while len(chosen) < functions:
        chosen.add((rng.choice(CLASSES), rng.choice(VERBS), rng.choice(NOUNS)))
    ordered = sorted(chosen, key=lambda _: rng.random())
    names = [f"{cls}.{verb}_{noun}" for cls, verb, noun in ordered]
    files = [f"src/app/{cls.lower()}.py" for cls, _verb, _noun in ordered]
    lines = [rng.randint(10, 2000) for _ in ordered]
    callees = [
        [(index + rng.randint(1, 250)) % functions for _ in range(rng.randint(2, 6))]
        for index in range(functions)
    ]
    return Program(names, files, lines, callees)


def generated_paths(program: Program, count: int, rng: random.Random) -> list[list[int]]:
    """`count` call paths (root first), 10-40 deep, with direct and mutual recursion."""
    entries = list(range(8))
    paths = []
    for _ in range(count):
        depth = rng.randint(10, 40)
        function = rng.choice(entries)
        path = [function]
        while len(path) < depth:
            roll = rng.random()
            if roll < 0.03:
                path.extend([function] * rng.randint(2, 8))
            elif roll < 0.045:
                other = rng.choice(program.callees[function])
                path.extend([other, function] * rng.randint(1, 4))
            else:
                callees = program.callees[function]
                function = callees[min(int(rng.expovariate(1.2)), len(callees) - 1)]
                path.append(function)
        paths.append(path[:depth])
    return paths


def zipf_picks(rng: np.random.Generator, pool: int, count: int) -> np.ndarray:
    """`count` indices into a pool of `pool`, a few very common, a long tail."""
    return (rng.zipf(1.15, count) - 1) % pool


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary name, so that an interrupted run leaves no half file to reuse."""
    partial = path.with_name(path.name + ".partial")
    write(partial)
    partial.replace(path)


# the inputs


def write_collapsed(path: Path, scale: float) -> None:
    """About 100 MB of collapsed stacks, "frame;frame;... count" per line."""
    rng = random.Random(1)
    program = generated_program(rng)
    frame_text = [
        f"{name} ({file}:{line})"
        for name, file, line in zip(program.names, program.files, program.lines, strict=True)
    ]
    pool = [
        ";".join(frame_text[f] for f in path).encode()
        for path in generated_paths(program, max(1000, int(60_000 * scale)), rng)
    ]
    target = int(100 * MB * scale)
    picker = np.random.default_rng(1)

    def write(partial: Path) -> None:
        written = 0
        with partial.open("wb") as out:
            while written < target:
                picks = zipf_picks(picker, len(pool), 1000).tolist()
                counts = (picker.geometric(0.05, len(picks))).tolist()
                block = b"".join(
                    b"%s %d\n" % (pool[p], c) for p, c in zip(picks, counts, strict=True)
                )
                out.write(block)
                written += len(block)

    write_atomically(path, write)


def write_cpuprofile(path: Path, scale: float) -> None:
    """A Node-style `.cpuprofile` with 1 M samples over a call tree of a few tens of thousands of nodes."""
    rng = random.Random(2)
    program = generated_program(rng)
    samples = int(1_000_000 * scale)
    node_parent = [0]
    node_function = [-1]
    children: dict[tuple[int, int], int] = {}
    special = {}
    for name in ("(program)", "(idle)", "(garbage collector)"):
        special[name] = len(node_parent)
        node_parent.append(0)
        node_function.append(-1)
    leaf_of_path = []
    for call_path in generated_paths(program, max(200, int(4000 * scale)), rng):
        node = 0
        for function in call_path:
            key = (node, function)
            child = children.get(key)
            if child is None:
                child = children[key] = len(node_parent)
                node_parent.append(node)
                node_function.append(function)
            node = child
        leaf_of_path.append(node)
    picker = np.random.default_rng(2)
    sampled = np.array(leaf_of_path)[zipf_picks(picker, len(leaf_of_path), samples)]
    roll = picker.random(samples)
    sampled[roll < 0.05] = special["(idle)"]
    sampled[(roll >= 0.05) & (roll < 0.08)] = special["(program)"]
    sampled[(roll >= 0.08) & (roll < 0.10)] = special["(garbage collector)"]
    node_ids = sampled + 1  # ids are 1-based, the root is 1
    hit_counts = np.bincount(sampled, minlength=len(node_parent)).tolist()
    child_lists: list[list[int]] = [[] for _ in node_parent]
    for node, parent in enumerate(node_parent[1:], start=1):
        child_lists[parent].append(node + 1)
    nodes = []
    for node, function in enumerate(node_function):
        if function < 0:
            frame = {
                "functionName": "(root)"
                if node == 0
                else next(n for n, i in special.items() if i == node),
                "scriptId": "0",
                "url": "",
                "lineNumber": -1,
                "columnNumber": -1,
            }
        else:
            frame = {
                "functionName": program.names[function],
                "scriptId": str(1 + function % 40),
                "url": "file:///srv/" + program.files[function].replace(".py", ".js"),
                "lineNumber": program.lines[function] - 1,
                "columnNumber": function % 60,
            }
        entry: dict[str, object] = {
            "id": node + 1,
            "callFrame": frame,
            "hitCount": hit_counts[node],
        }
        if child_lists[node]:
            entry["children"] = child_lists[node]
        nodes.append(entry)
    deltas = np.maximum(1, picker.normal(1000, 150, samples)).astype(np.int64)
    start = 81_234_567_890
    document = {
        "nodes": nodes,
        "startTime": start,
        "endTime": start + int(deltas.sum()),
        "samples": node_ids.astype(np.int64),
        "timeDeltas": deltas,
    }
    write_atomically(
        path,
        lambda partial: partial.write_bytes(
            orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
        ),
    )


def write_chrome_trace(path: Path, scale: float) -> None:
    """A DevTools-style `{"traceEvents": [...]}` with 2 M B/E events on four threads (about 200 MB)."""
    rng = random.Random(3)
    program = generated_program(rng)
    events = int(2_000_000 * scale)
    threads = {
        1: "CrRendererMain",
        2: "DedicatedWorker thread",
        3: "ThreadPoolForegroundWorker",
        4: "Compositor",
    }
    names = [name.encode() for name in program.names]
    begin = b'{"pid":4242,"tid":%d,"ts":%d,"ph":"B","cat":"v8","name":"%s","args":{}},\n'
    end = b'{"pid":4242,"tid":%d,"ts":%d,"ph":"E","cat":"v8","name":"%s","args":{}},\n'
    stacks: dict[int, list[int]] = {tid: [] for tid in threads}
    clock = dict.fromkeys(threads, 5_000_000_000)

    def write(partial: Path) -> None:
        written = 0
        with partial.open("wb") as out:
            out.write(b'{"traceEvents":[\n')
            for tid, thread in threads.items():
                out.write(
                    b'{"pid":4242,"tid":%d,"ts":0,"ph":"M","cat":"__metadata","name":"thread_name","args":{"name":"%s"}},\n'
                    % (tid, thread.encode())
                )
            while written < events:
                for tid in threads:
                    stack, now = stacks[tid], clock[tid]
                    lines = []
                    for _ in range(500):
                        now += rng.randint(1, 40)
                        depth = len(stack)
                        if depth and (depth >= 40 or (depth >= 10 and rng.random() < 0.52)):
                            lines.append(end % (tid, now, names[stack.pop()]))
                        else:
                            if stack and rng.random() < 0.05:
                                function = stack[-1]
                            elif stack:
                                callees = program.callees[stack[-1]]
                                function = callees[min(int(rng.expovariate(1.2)), len(callees) - 1)]
                            else:
                                function = rng.randrange(8)
                            stack.append(function)
                            lines.append(begin % (tid, now, names[function]))
                    clock[tid] = now
                    out.write(b"".join(lines))
                    written += len(lines)
            closing = []
            for tid, stack in stacks.items():
                now = clock[tid]
                while stack:
                    now += 1
                    closing.append(end % (tid, now, names[stack.pop()]))
            out.write(b"".join(closing))
            out.write(
                b'{"pid":4242,"tid":1,"ts":0,"ph":"M","cat":"__metadata","name":"process_name","args":{"name":"Renderer"}}\n'
            )
            out.write(
                b'],"metadata":{"source":"DevTools","startTime":"2024-01-01T00:00:00.000Z"}}\n'
            )

    write_atomically(path, write)


def write_pprof(path: Path, scale: float) -> None:
    """A gzipped pprof `Profile` (Go CPU profile shape) with 1 M samples.

    The header (strings, functions, locations, mapping, sample types) and one
    encoded `Sample` per distinct stack are made with the checked-in
    `pprof_pb2.Profile` message; the 1 M samples are the encoded `sample`
    fields concatenated, which is what serialising them one by one gives.
    """
    from flamesight.formats import pprof_pb2

    rng = random.Random(4)
    program = generated_program(rng)
    samples = int(1_000_000 * scale)
    profile = pprof_pb2.Profile()
    strings = [""]
    string_ids: dict[str, int] = {}

    def string(text: str) -> int:
        if text not in string_ids:
            string_ids[text] = len(strings)
            strings.append(text)
        return string_ids[text]

    profile.sample_type.add(type=string("samples"), unit=string("count"))
    profile.sample_type.add(type=string("cpu"), unit=string("nanoseconds"))
    profile.mapping.add(
        id=1, memory_start=0x400000, memory_limit=0x1400000, filename=string("/srv/app/server")
    )
    for function, (name, file, line) in enumerate(
        zip(program.names, program.files, program.lines, strict=True), start=1
    ):
        go_name = "main.(*" + name.replace(".", ").", 1)
        profile.function.add(
            id=function, name=string(go_name), system_name=string(go_name),
            filename=string(file.replace(".py", ".go")), start_line=line,
        )  # fmt: skip
        location = profile.location.add(id=function, mapping_id=1, address=0x400000 + 64 * function)
        location.line.add(function_id=function, line=line + 7)
    profile.period_type.type = string("cpu")
    profile.period_type.unit = string("nanoseconds")
    profile.period = 10_000_000
    profile.time_nanos = 1_700_000_000_000_000_000
    profile.duration_nanos = samples * 10_000_000 // 4
    profile.string_table.extend(strings)
    header = profile.SerializeToString()
    encoded_samples = []
    for call_path in generated_paths(program, 20_000, rng):
        one = pprof_pb2.Profile()
        one.sample.add(location_id=[f + 1 for f in reversed(call_path)], value=[1, 10_000_000])
        encoded_samples.append(one.SerializeToString())
    picks = zipf_picks(np.random.default_rng(4), len(encoded_samples), samples).tolist()
    body = b"".join(encoded_samples[p] for p in picks)
    write_atomically(path, lambda partial: partial.write_bytes(gzip.compress(header + body, 6)))


@dataclass(frozen=True)
class BenchInput:
    """One benchmark input: its name, how its file is named and how it is made."""

    name: str
    file_name: str
    write: Callable[[Path, float], None]

    def path(self, scale: float) -> Path:
        """Where the input for `scale` lives."""
        suffix = "" if scale == 1 else f"-x{scale:g}"
        stem, dot, extension = self.file_name.partition(".")
        return DATA_DIR / f"{stem}{suffix}{dot}{extension}"


INPUTS = [
    BenchInput("collapsed", "collapsed-100MB.txt", write_collapsed),
    BenchInput("cpuprofile", "node-1M-samples.cpuprofile", write_cpuprofile),
    BenchInput("chrome-trace", "trace-2M-events.json", write_chrome_trace),
    BenchInput("pprof", "go-cpu-1M-samples.pb.gz", write_pprof),
]


# measuring


def measure(path: Path) -> dict[str, object]:
    """In this (fresh) process: time `load` + `top_functions`, and the RSS it took."""
    from flamesight.analysis import top_functions
    from flamesight.formats import format_modules, load

    format_modules()
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    group = load(path)
    top = top_functions(group.active, n=20)
    seconds = time.perf_counter() - began
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = path.read_bytes()
    data_bytes = len(gzip.decompress(data)) if data.startswith(b"\x1f\x8b") else len(data)
    return {
        "format": group.format,
        "profiles": len(group.profiles),
        "samples": sum(len(p.samples) for p in group.profiles),
        "frames": sum(len(p.frames) for p in group.profiles),
        "top": top.functions[0].name if top.functions else None,
        "seconds": seconds,
        "file_bytes": path.stat().st_size,
        "data_bytes": data_bytes,
        "baseline_bytes": baseline_kb * 1024,
        "peak_bytes": peak_kb * 1024,
    }


def measure_in_child(path: Path) -> dict[str, object]:
    """Run `measure` in a new interpreter and return what it printed."""
    completed = subprocess.run(
        [sys.executable, __file__, "--measure", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def table_row(name: str, result: dict[str, object]) -> str:
    """One Markdown table row of the results."""
    if "error" in result:
        return f"| {name} | {result['error']} |" + " |" * 8
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
        f"{result['seconds']:.2f} | {rate:,.1f}{rate_mark} | {peak_mb:,.0f} | {grown_mb:,.0f} | "
        f"{ratio:.2f}{ratio_mark} |"
    )


TABLE_HEADER = (
    "| input | file MB | data MB | samples | load+top s | MB/s | peak RSS MB | RSS growth MB | growth / data |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
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
        runs = [measure_in_child(path) for _ in range(max(1, args.repeat))]
        good = [r for r in runs if "error" not in r]
        result = min(good, key=lambda r: r["seconds"]) if good else runs[0]
        rows.append(table_row(bench_input.name, result))
        print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"\nscale {args.scale:g}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
        f"targets: >= {TARGET_MB_PER_SECOND:g} MB/s, RSS growth <= {TARGET_RSS_RATIO:g}x the data\n"
    )
    print(TABLE_HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()

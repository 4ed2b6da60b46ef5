"""The inputs of `import_bench.py`: large generated profiles, one per format.

Each `write_*` function writes one of these (sizes at scale 1):

- collapsed stacks, 100 MB (py-spy style frames, "name (file:line)");
- a Chrome/Node `.cpuprofile` with 1 M samples;
- a Chrome trace (JSON object) with 2 M `B`/`E` events, about 200 MB;
- a pprof `.pb.gz` with 1 M samples (CPU: samples/count and cpu/nanoseconds);
- a Firefox Gecko profile with 1 M samples on GeckoMain (Firefox 63 layout);
- a Safari Web Inspector timeline recording, about 100 MB of sample stacks;
- an Instruments 16 Time Profiler deep copy, a call tree of about 1.4 M rows (100 MB);
- a `node --prof` isolate log, about 100 MB of ticks, hot functions
  optimized a tenth of the way in, and the `--prof-process --preprocess`
  JSON of such a log, about 100 MB;
- a Chrome `.heapprofile` (sampling heap profiler), a tree of about 400 k nodes (90 MB);
- a Ruby stackprof `raw: true` wall-mode dump, 125 k samples (about 60 MB);
- a GHC `+RTS -pj` report, a cost-centre tree of about 900 k nodes (60 MB);
- a callgrind profile (`--dump-instr=yes`, name and subposition compression), about 50 MB;
- a pmcstat `-G` callgraph, about 80 MB;
- a Papyrus script profiling log, about 100 MB of PUSH/POP lines;
- a Hermes sampling profile (trace events with `samples` and `stackFrames`), 1 M samples;
- a pyinstrument session (`.pyisession`), about 100 MB, and a
  `pyinstrument -r json` call tree of about 400 k nodes (90 MB);
- Austin 3 wall-time samples of four threads, about 100 MB;
- `perf script` of a Rust program (legacy-mangled symbols), 4 threads, about 100 MB.

All of them describe one generated program: 3,000 functions in 40 classes, each
calling a few others with a skew towards the first, stacks 10-40 deep with
direct and mutual recursion, samples drawn with a Zipf skew over a pool of
distinct stacks.

`INPUTS` names each input, its file name in benchmarks/data/ and its writer.
"""

from __future__ import annotations

import gzip
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

DATA_DIR = Path(__file__).resolve().parent / "data"
MB = 1_000_000

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
    ordered = sorted(chosen)  # a set's order varies with the hash seed; the shuffle must not
    rng.shuffle(ordered)
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


# inputs for the text and JSON formats of issue "Every other profile format"


@dataclass(frozen=True)
class CallTree:
    """A prefix tree of call paths: node 0 is the root (function -1); parents come before children."""

    parent: list[int]
    function: list[int]
    self_count: list[int]
    total: list[int]
    children: list[list[int]]
    leaves: list[int]  # the node where each path ends

    def preorder(self) -> list[tuple[int, int]]:
        """(node, depth) of every node but the root, depth first, children in insertion order."""
        order = []
        pending = [(child, 0) for child in reversed(self.children[0])]
        while pending:
            node, depth = pending.pop()
            order.append((node, depth))
            pending.extend((child, depth + 1) for child in reversed(self.children[node]))
        return order


def call_tree(paths: list[list[int]], counts: list[int]) -> CallTree:
    """The call tree of `paths` (root first), path i weighing `counts[i]` at its leaf."""
    parent, function, self_count = [-1], [-1], [0]
    children: list[list[int]] = [[]]
    index: dict[tuple[int, int], int] = {}
    leaves = []
    for call_path, count in zip(paths, counts, strict=True):
        node = 0
        for called in call_path:
            child = index.get((node, called))
            if child is None:
                child = index[(node, called)] = len(parent)
                parent.append(node)
                function.append(called)
                self_count.append(0)
                children.append([])
                children[node].append(child)
            node = child
        self_count[node] += count
        leaves.append(node)
    total = list(self_count)
    for node in range(len(parent) - 1, 0, -1):
        total[parent[node]] += total[node]
    return CallTree(parent, function, self_count, total, children, leaves)


def nested_json(
    tree: CallTree, node_json: Callable[[int], tuple[bytes, bytes]], separator: bytes
) -> bytes:
    """The tree as nested JSON objects, without recursion; `node_json(n)` is the text before and after n's children."""
    pieces: list[bytes] = []
    closers: list[bytes] = []
    after_opener = True
    for node, depth in [(0, 0)] + [(node, depth + 1) for node, depth in tree.preorder()]:
        while len(closers) > depth:
            pieces.append(closers.pop())
        if not after_opener:
            pieces.append(separator)
        opener, closer = node_json(node)
        pieces.append(opener)
        after_opener = bool(tree.children[node])
        if after_opener:
            closers.append(closer)
        else:
            pieces.append(closer)
    pieces.extend(reversed(closers))
    return b"".join(pieces)


def sampled_program(
    seed: int, paths: int, samples: int
) -> tuple[Program, list[list[int]], list[int]]:
    """The generated program, a pool of `paths` call paths and `samples` Zipf picks from it."""
    rng = random.Random(seed)
    program = generated_program(rng)
    pool = generated_paths(program, max(200, paths), rng)
    picks = zipf_picks(np.random.default_rng(seed), len(pool), max(1, samples)).tolist()
    return program, pool, picks


def tree_program(seed: int, paths: int) -> tuple[Program, CallTree]:
    """The generated program and the call tree of `paths` paths, each weighing 1 + its Zipf picks."""
    program, pool, picks = sampled_program(seed, paths, 10 * paths)
    counts = (np.bincount(picks, minlength=len(pool)) + 1).tolist()
    return program, call_tree(pool, counts)


def write_sized(
    path: Path,
    target: int,
    head: bytes,
    block: Callable[[], bytes],
    tail: Callable[[], bytes],
    separator: bytes = b"",
) -> None:
    """`head`, blocks (joined by `separator`) until about `target` bytes, then `tail()`."""

    def write(partial: Path) -> None:
        with partial.open("wb") as out:
            out.write(head)
            written = len(head)
            while written < target:
                data = block()
                out.write(separator + data if written > len(head) else data)
                written += len(data)
            out.write(tail())

    write_atomically(path, write)


def write_json(path: Path, document: object) -> None:
    """`document` as compact JSON (NumPy arrays as lists)."""
    write_atomically(
        path,
        lambda partial: partial.write_bytes(
            orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
        ),
    )


def js_url(program: Program, function: int) -> str:
    """The script a generated function lives in, as a browser or Node names it."""
    return "https://app.example.com/static/" + program.files[function].replace(".py", ".js")


def write_firefox(path: Path, scale: float) -> None:
    """A Gecko profile (Firefox 63 layout) with 1 M samples on GeckoMain, 1 ms apart."""
    samples = int(1_000_000 * scale)
    program, pool, picks = sampled_program(5, int(60_000 * scale), samples)
    strings = ["(root)", "js::RunScript"] + [
        f"{name} ({js_url(program, f)}:{line}:{f % 60})"
        for f, (name, line) in enumerate(zip(program.names, program.lines, strict=True))
    ]
    frames = [[0], [1, None, None, None, None, 1]] + [
        [2 + f, None, None, line, f % 60, 3] for f, line in enumerate(program.lines)
    ]
    tree = call_tree(pool, [0] * len(pool))
    stack_rows: list[list[int | None]] = [[None, 0], [0, 1]]
    stack_rows += [[1 + tree.parent[n], 2 + tree.function[n]] for n in range(1, len(tree.parent))]
    picker = np.random.default_rng(5)
    times = np.round(0.6 + np.cumsum(picker.normal(1.0, 0.08, samples)), 6).tolist()
    sample_rows = [[1 + tree.leaves[p], t, 0.0] for p, t in zip(picks, times, strict=True)]

    def table(schema: dict[str, int], data: list) -> dict[str, object]:
        return {"schema": schema, "data": data}

    thread = {
        "processType": "default", "name": "GeckoMain", "tid": 7051856, "pid": 32922,
        "registerTime": 5.7953, "unregisterTime": None,
        "samples": table({"stack": 0, "time": 1, "responsiveness": 2}, sample_rows),
        "markers": table({"name": 0, "time": 1, "data": 2}, []),
        "stackTable": table({"prefix": 0, "frame": 1}, stack_rows),
        "frameTable": table(
            {"location": 0, "implementation": 1, "optimizations": 2, "line": 3, "column": 4, "category": 5},
            frames,
        ),
        "stringTable": strings,
    }  # fmt: skip
    document = {
        "meta": {
            "version": 12, "startTime": 1536100486169.2188, "shutdownTime": None, "interval": 1,
            "stackwalk": 0, "processType": 0, "platform": "X11", "oscpu": "Linux x86_64",
            "product": "Firefox", "misc": "rv:63.0",
            "categories": [
                {"name": "Idle", "color": "transparent"}, {"name": "Other", "color": "grey"},
                {"name": "Layout", "color": "purple"}, {"name": "JavaScript", "color": "yellow"},
            ],
        },
        "libs": [], "pausedRanges": [], "threads": [thread], "processes": [],
    }  # fmt: skip
    write_json(path, document)


def write_safari(path: Path, scale: float) -> None:
    """A Web Inspector timeline recording, about 100 MB of sample stacks (innermost frame first)."""
    program, pool, _ = sampled_program(6, int(20_000 * scale), 1)
    frame_json = [
        orjson.dumps({
            "sourceID": str(10 + f % 40), "name": name, "line": line, "column": 1 + f % 60,
            "url": js_url(program, f), "expressionLocation": {"line": line + 3, "column": 9},
        })
        for f, (name, line) in enumerate(zip(program.names, program.lines, strict=True))
    ]  # fmt: skip
    stacks = [b",".join(frame_json[f] for f in reversed(call_path)) for call_path in pool]
    picker = np.random.default_rng(6)
    clock = [4.163978071999736]
    durations: list[float] = []

    def block() -> bytes:
        picks = zipf_picks(picker, len(stacks), 200).tolist()
        steps = picker.normal(0.001, 0.0001, len(picks)).tolist()
        idle = (picker.random(len(picks)) < 0.01).tolist()
        out = []
        for pick, step, pause in zip(picks, steps, idle, strict=True):
            clock[0] += step + (0.05 if pause else 0.0)
            durations.append(round(step, 9))
            out.append(b'{"timestamp":%r,"stackFrames":[%s]}' % (clock[0], stacks[pick]))
        return b",".join(out)

    head = (
        b'{"version":1,"recording":{"displayName":"Timeline Recording 1",'
        b'"startTime":4.163978071999736,"discontinuities":[],"instrumentTypes":'
        b'["timeline-record-type-script","timeline-record-type-cpu"],"records":[],'
        b'"markers":[],"memoryPressureEvents":[],"sampleStackTraces":['
    )
    write_sized(
        path,
        int(100 * MB * scale),
        head,
        block,
        lambda: (
            b'],"sampleDurations":%s,"endTime":%r},"overview":{"secondsPerPixel":0.01}}'
            % (orjson.dumps(durations), clock[0])
        ),
        separator=b",",
    )


def instruments_time(milliseconds: float) -> str:
    """A time as an Instruments 16 call tree shows it ("846.00 ms", "4.93 s", "16.67 min", "0 s")."""
    if milliseconds == 0:
        return "0 s"
    if milliseconds >= 60_000:
        return f"{milliseconds / 60_000:.2f} min"
    if milliseconds >= 1000:
        return f"{milliseconds / 1000:.2f} s"
    return f"{milliseconds:.2f} ms"


def write_instruments(path: Path, scale: float) -> None:
    """An Instruments 16 Time Profiler deep copy, 1 ms samples, a call tree of about 1.4 M rows."""
    program, tree = tree_program(7, int(100_000 * scale))
    whole = tree.total[0]
    rows = [
        "Weight\tSelf Weight\tSymbol Names",
        f"{instruments_time(whole)}  100.0%\t0 s\t   start",
        f"{instruments_time(whole)}  100.0%\t0 s\t    main",
    ]
    for node, depth in tree.preorder():
        share = f"{100 * tree.total[node] / whole:.1f}%".rjust(6, "\u2007")
        rows.append(
            f"{instruments_time(tree.total[node])}  {share}\t{instruments_time(tree.self_count[node])}"
            f"\t{' ' * (depth + 5)}{program.names[tree.function[node]]}"
        )
    rows.append("")
    write_atomically(path, lambda partial: partial.write_text("\n".join(rows)))


@dataclass(frozen=True)
class V8Code:
    """The code of a generated program as `node --prof` logs it: libraries, builtins, JS functions."""

    libraries: list[tuple[str, int, int]]
    builtins: list[tuple[str, str, int, int]]  # (kind, name, start, size)
    js_names: list[str]
    js_starts: list[int]  # baseline code of each function
    optimized_starts: dict[int, int]  # function -> optimized code, created a tenth into the run


def v8_code(program: Program) -> V8Code:
    """Where each function's code lives; the 300 first functions (the hottest) get optimized."""
    libraries = [
        ("/usr/local/bin/node", 0x400000, 0x2A00000),
        ("/lib/x86_64-linux-gnu/libc.so.6", 0x7F3A2C000000, 0x7F3A2C1C0000),
    ]
    builtins = [
        ("Builtin", "JSEntryTrampoline", 0x3A8437E04000, 374),
        ("Builtin", "InterpreterEntryTrampoline", 0x3A8437E04200, 980),
        ("Stub", "CEntryStub", 0x3A8437E04600, 414),
        ("BytecodeHandler", "LdaNamedProperty", 0x3A8437E04800, 512),
    ]
    names = [
        f"{name} /srv/app/{file.replace('.py', '.js')}:{line}:{1 + f % 60}"
        for f, (name, file, line) in enumerate(
            zip(program.names, program.files, program.lines, strict=True)
        )
    ]
    js_starts = [0x353956B00000 + 0x400 * f for f in range(len(names))]
    optimized = {f: 0x1D5E2A300000 + 0x800 * f for f in range(300)}
    return V8Code(libraries, builtins, names, js_starts, optimized)


def v8_log_stacks(code: V8Code, pool: list[list[int]], optimized: bool) -> list[bytes]:
    """Per call path, its tick line with `%d` for the time: pc, flags, return addresses innermost first."""
    starts = code.js_starts
    if optimized:
        starts = [code.optimized_starts.get(f, s) for f, s in enumerate(starts)]
    stacks = []
    for number, call_path in enumerate(pool):
        addresses = [
            starts[f] + 0x40 + (number + depth) % 0x2C0 for depth, f in enumerate(call_path)
        ]
        addresses.append(code.builtins[0][2] + 0x60)
        pc = b"%x" % addresses[-2] if number % 20 else b"%x" % (code.libraries[0][1] + 0x1F3A40)
        frames = b",".join(b"0x%x" % a for a in reversed(addresses[:-1]))
        stacks.append(b"tick,0x" + pc + b",%d,0,0x0,0," + frames + b",0x%x" % addresses[-1])
    return stacks


def write_v8_log(path: Path, scale: float) -> None:
    """A `node --prof` isolate log, about 100 MB of ticks 1 ms apart; hot functions optimized a while in."""
    program, pool, _ = sampled_program(8, int(20_000 * scale), 1)
    code = v8_code(program)
    head = [b"v8-version,11,3,244,8,0,0"]
    head += [b'shared-library,"%s",0x%x,0x%x,0' % (p.encode(), s, e) for p, s, e in code.libraries]
    head += [
        b'code-creation,%s,2,%d,0x%x,%d,"%s"'
        % (kind.encode(), 4225 + 9 * i, start, size, name.encode())
        for i, (kind, name, start, size) in enumerate(code.builtins)
    ]
    head += [
        b'code-creation,LazyCompile,10,%d,0x%x,960,"%s",0x%x,~'
        % (14000 + 12 * f, start, name.encode(), 0x4555F880000 + 0x60 * f)
        for f, (name, start) in enumerate(zip(code.js_names, code.js_starts, strict=True))
    ]
    head.append(b'profiler,"begin",1000')
    stacks = [v8_log_stacks(code, pool, False), v8_log_stacks(code, pool, True)]
    picker = np.random.default_rng(8)
    target = int(100 * MB * scale)
    state = {"time": 60_000, "written": 0, "optimized": False}

    def block() -> bytes:
        lines = []
        if not state["optimized"] and state["written"] > target // 10:
            state["optimized"] = True
            lines += [
                b'code-creation,LazyCompile,13,%d,0x%x,2048,"%s",0x%x,*'
                % (state["time"] + f, start, code.js_names[f].encode(), 0x4555F880000 + 0x60 * f)
                for f, start in code.optimized_starts.items()
            ]
        era = stacks[state["optimized"]]
        steps = np.maximum(1, picker.normal(1000, 60, 500)).astype(np.int64).tolist()
        for pick, step in zip(zipf_picks(picker, len(era), 500).tolist(), steps, strict=True):
            state["time"] += step
            lines.append(era[pick] % state["time"])
        data = b"\n".join(lines) + b"\n"
        state["written"] += len(data)
        return data

    header = b"\n".join(head) + b"\n"
    write_sized(path, target + len(header), header, block, lambda: b'profiler,"end"\n')


def write_v8_json(path: Path, scale: float) -> None:
    """What `node --prof-process --preprocess` makes of such a log: about 100 MB of ticks as code indices."""
    program, pool, _ = sampled_program(9, int(20_000 * scale), 1)
    code = v8_code(program)
    entries: list[dict[str, object]] = [
        {"name": p, "type": "SHARED_LIB"} for p, _, _ in code.libraries
    ]
    entries += [
        {"name": "T node::Start(int, char**)", "type": "CPP"},
        {"name": "T __libc_start_main", "type": "CPP"},
    ]
    entries += [{"name": name, "type": "CODE", "kind": kind} for kind, name, _, _ in code.builtins]
    first_js = len(entries)
    functions = []
    for f, name in enumerate(code.js_names):
        functions.append({"name": name, "codes": [len(entries)]})
        entries.append(
            {"name": name, "type": "JS", "kind": "Unopt", "func": f, "tm": 14000 + 12 * f}
        )
    optimized_index = {}
    for f in code.optimized_starts:
        optimized_index[f] = len(entries)
        functions[f]["codes"].append(len(entries))
        entries.append(
            {"name": code.js_names[f], "type": "JS", "kind": "Opt", "func": f, "tm": 95_000}
        )
    builtin = first_js - len(code.builtins)
    stacks = []
    for optimized in (False, True):
        era = []
        for number, call_path in enumerate(pool):
            pairs = [
                b"%d,%d" % (optimized_index[f] if optimized and f in optimized_index else first_js + f,
                            0x40 + (number + depth) % 0x2C0)
                for depth, f in enumerate(call_path)
            ]  # fmt: skip
            pairs.append(b"%d,96" % builtin)
            if number % 20 == 0:
                pairs.insert(
                    len(pairs) - 1, b"2,0"
                )  # node::Start under the JS, as a C++ tick shows
            era.append(b'{"tm":%d,"vm":0,"s":[' + b",".join(reversed(pairs)) + b"]}")
        stacks.append(era)
    picker = np.random.default_rng(9)
    target = int(100 * MB * scale)
    state = {"time": 60_000, "written": 0}

    def block() -> bytes:
        era = stacks[state["written"] > target // 10]
        steps = np.maximum(1, picker.normal(1000, 60, 500)).astype(np.int64).tolist()
        ticks = []
        for pick, step in zip(zipf_picks(picker, len(era), 500).tolist(), steps, strict=True):
            state["time"] += step
            ticks.append(era[pick] % state["time"])
        data = b",\n".join(ticks)
        state["written"] += len(data)
        return data

    head = b'{\n  "code": %s,\n  "functions": %s,\n  "ticks": [\n' % (
        orjson.dumps(entries),
        orjson.dumps(functions),
    )
    write_sized(path, target, head, block, lambda: b"\n  ]\n}\n", separator=b",\n")


def write_heapprofile(path: Path, scale: float) -> None:
    """A Chrome sampling heap profile: a call tree of about 400 k nodes (90 MB) and its sampled allocations."""
    program, tree = tree_program(10, int(25_000 * scale))
    picker = np.random.default_rng(10)
    sizes = np.array([16, 32, 64, 128, 256, 1024, 4096, 32768])
    nodes: list[dict[str, object]] = [
        {
            "callFrame": {"functionName": "(root)", "scriptId": "0", "url": "", "lineNumber": -1, "columnNumber": -1},
            "selfSize": 0, "id": 1, "children": [],
        }
    ]  # fmt: skip
    samples = []
    for node in range(1, len(tree.parent)):
        f = tree.function[node]
        allocations = sizes[picker.integers(0, len(sizes), tree.self_count[node])]
        nodes.append({
            "callFrame": {
                "functionName": program.names[f], "scriptId": str(10 + f % 40),
                "url": js_url(program, f), "lineNumber": program.lines[f] - 1, "columnNumber": f % 60,
            },
            "selfSize": int(allocations.sum()), "id": node + 1, "children": [],
        })  # fmt: skip
        samples += [{"size": int(size), "nodeId": node + 1, "ordinal": 0} for size in allocations]
        nodes[tree.parent[node]]["children"].append(nodes[-1])  # type: ignore[union-attr]
    order = picker.permutation(len(samples)).tolist()
    for ordinal, at in enumerate(order, start=1):
        samples[at]["ordinal"] = ordinal
    write_json(path, {"head": nodes[0], "samples": [samples[at] for at in order]})


def ruby_name(name: str) -> str:
    """A generated method as Ruby names it: ``Parser#get_node``."""
    return name.replace(".", "#", 1)


def write_stackprof(path: Path, scale: float) -> None:
    """A stackprof wall-mode `raw: true` dump of 125 k samples (about 60 MB), with GC samples."""
    samples = int(125_000 * scale)
    program, pool, picks = sampled_program(11, int(20_000 * scale), samples)
    frame_ids = [70_098_916_000_000 + 40 * f for f in range(len(program.names))]
    gc_id = 70_098_912_279_220
    counts = np.bincount(picks, minlength=len(pool)).tolist()
    total_samples = [0] * len(frame_ids)
    own_samples = [0] * len(frame_ids)
    edges: list[dict[str, int]] = [{} for _ in frame_ids]
    for call_path, count in zip(pool, counts, strict=True):
        if count:
            for f in set(call_path):
                total_samples[f] += count
            own_samples[call_path[-1]] += count
            for caller, callee in set(itertools.pairwise(call_path)):
                edges[caller][str(frame_ids[callee])] = (
                    edges[caller].get(str(frame_ids[callee]), 0) + count
                )
    frames: dict[str, dict[str, object]] = {
        str(gc_id): {"name": "(garbage collection)", "file": "", "total_samples": 0, "samples": 0}
    }
    for f, frame_id in enumerate(frame_ids):
        if total_samples[f]:
            frames[str(frame_id)] = {
                "name": ruby_name(program.names[f]), "file": "/srv/app/lib/" + program.files[f].rsplit("/", 1)[1].replace(".py", ".rb"),
                "line": program.lines[f], "total_samples": total_samples[f], "samples": own_samples[f],
                "edges": edges[f], "lines": {str(program.lines[f] + 2): [total_samples[f], own_samples[f]]},
            }  # fmt: skip
    picker = np.random.default_rng(11)
    garbage = (picker.random(samples) < 0.02).tolist()
    raw: list[int] = []
    raw_lines: list[int] = []
    run_start = 0
    for index in range(samples + 1):
        if (
            index < samples
            and index > run_start
            and (picks[index], garbage[index]) == (picks[run_start], garbage[run_start])
        ):
            continue
        if index > run_start:
            count = index - run_start
            stack = (
                [gc_id] if garbage[run_start] else [frame_ids[f] for f in pool[picks[run_start]]]
            )
            lines = (
                [0]
                if garbage[run_start]
                else [program.lines[f] + 2 for f in pool[picks[run_start]]]
            )
            raw += [len(stack), *stack, count]
            raw_lines += [len(stack), *lines, count]
        run_start = index
    frames[str(gc_id)]["total_samples"] = frames[str(gc_id)]["samples"] = sum(garbage)
    document = {
        "version": 1.2, "mode": "wall", "interval": 1000, "samples": samples, "gc_samples": sum(garbage),
        "missed_samples": 0, "metadata": {}, "frames": frames, "raw": raw, "raw_lines": raw_lines,
        "raw_timestamp_deltas": np.maximum(1, picker.normal(1000, 40, samples)).astype(np.int64),
    }  # fmt: skip
    write_json(path, document)


def write_ghc_prof(path: Path, scale: float) -> None:
    """A GHC `+RTS -pj` report: a cost-centre tree of about 900 k nodes (60 MB), 1 ms ticks."""
    program, tree = tree_program(12, int(60_000 * scale))
    picker = np.random.default_rng(12)
    builtins = [
        ("MAIN", "MAIN"),
        ("GC", "GC"),
        ("SYSTEM", "SYSTEM"),
        ("OVERHEAD_of", "PROFILING"),
        ("DONT_CARE", "MAIN"),
    ]
    centres = [
        {"id": f + 1, "label": name.split(".")[1], "module": "App." + name.split(".")[0],
         "src_loc": f"src/App/{name.split('.')[0]}.hs:({line},1)-({line + 12},30)", "is_caf": False}
        for f, (name, line) in enumerate(zip(program.names, program.lines, strict=True))
    ]  # fmt: skip
    main = len(centres) + 1
    centres += [
        {"id": main + i, "label": label, "module": module, "src_loc": "<built-in>", "is_caf": False}
        for i, (label, module) in enumerate(builtins)
    ]
    allocations = (tree.self_count * picker.integers(0, 4096, len(tree.parent))).tolist()
    entries = picker.integers(1, 50, len(tree.parent)).tolist()
    head = (
        b'{\n"program": "app",\n"arguments": ["app"],\n"rts_arguments": ["-pj"],\n'
        b'"end_time": "Sun Nov 29 12:00 2026",\n"initial_capabilities": 0,\n'
        b'"total_time": %.2f,\n"total_ticks": %d,\n"tick_interval": 1000,\n"total_alloc": %d,\n'
        b'"cost_centres": [\n%s],\n"profile": '
        % (tree.total[0] / 1000, tree.total[0], sum(allocations),
           b", ".join(orjson.dumps(c) for c in reversed(centres)))
    )  # fmt: skip

    def node_json(node: int) -> tuple[bytes, bytes]:
        centre = main if node == 0 else tree.function[node] + 1
        opener = b'{"id": %d, "entries": %d, "alloc": %d, "ticks": %d, "children": [' % (
            centre,
            entries[node],
            allocations[node],
            tree.self_count[node],
        )
        return opener, b"\n]}" if tree.children[node] else b"]}"

    document = head + nested_json(tree, node_json, b"\n,") + b"\n}\n"
    write_atomically(path, lambda partial: partial.write_bytes(document))


def path_counts(seed: int, paths: int, samples: int) -> tuple[Program, list[list[int]], list[int]]:
    """The generated program, a pool of call paths and how many of `samples` Zipf picks each got."""
    program, pool, picks = sampled_program(seed, paths, samples)
    return program, pool, np.bincount(picks, minlength=len(pool)).tolist()


def write_callgrind(path: Path, scale: float) -> None:
    """A callgrind profile (`--dump-instr=yes`, name and subposition compression), about 50 MB."""
    program, pool, counts = path_counts(13, 20_000, 1_000_000)
    self_cost = [0] * len(program.names)
    call_cost: list[dict[int, list[int]]] = [{} for _ in program.names]
    for call_path, count in zip(pool, counts, strict=True):
        if count:
            self_cost[call_path[-1]] += 1000 * count
            for at, (caller, callee) in enumerate(itertools.pairwise(call_path)):
                if (
                    callee not in call_path[: at + 1]
                ):  # callgrind counts a recursive call's cost once
                    call = call_cost[caller].setdefault(callee, [0, 0])
                    call[0] += count
                    call[1] += 1000 * count
    body_lines = max(20, int(2_000 * scale))
    files = {file: number for number, file in enumerate(sorted(set(program.files)), start=1)}
    named: set[str] = set()

    def compressed(kind: str, number: int, text: str) -> str:
        if kind + str(number) in named:
            return f"({number})"
        named.add(kind + str(number))
        return f"({number}) {text}"

    def c_name(function: int) -> str:
        return program.names[function].replace(".", "::")

    def c_file(function: int) -> str:
        return "/srv/app/" + program.files[function].replace(".py", ".cc")

    lines = [
        "# callgrind format", "version: 1", "creator: callgrind-3.22.0", "pid: 4242", "cmd:  ./app --serve",
        "part: 1", "", "", "desc: I1 cache: ", "desc: D1 cache: ", "desc: LL cache: ", "",
        "desc: Timerange: Basic block 0 - 912345678", "desc: Trigger: Program termination", "",
        "positions: instr line", "events: Ir", f"summary: {sum(self_cost)}", "", "",
    ]  # fmt: skip
    rng = random.Random(13)
    for function in range(len(program.names)):
        file_number = files[program.files[function]]
        lines.append(f"fl={compressed('fl', file_number, c_file(function))}")
        lines.append(f"fn={compressed('fn', function + 1, c_name(function))}")
        address = 0x401000 + 0x4000 * function
        lines.append(
            f"0x{address:x} {program.lines[function]} {self_cost[function] // body_lines + 3}"
        )
        calls = list(call_cost[function].items())
        every = max(1, body_lines // (len(calls) + 1))
        for line_number in range(1, body_lines):
            step = rng.randint(1, 7)
            lines.append(
                f"+{step} {'*' if line_number % 3 else '+1'} {self_cost[function] // body_lines}"
            )
            if line_number % every == 0 and calls:
                callee, (count, cost) = calls.pop()
                callee_file = files[program.files[callee]]
                if callee_file != file_number:
                    lines.append(f"cfl={compressed('fl', callee_file, c_file(callee))}")
                lines.append(f"cfn={compressed('fn', callee + 1, c_name(callee))}")
                lines.append(
                    f"calls={count} 0x{0x401000 + 0x4000 * callee:x} {program.lines[callee]}"
                )
                lines.append(f"+5 * {cost}")
        lines.append("")
    lines += [f"totals: {sum(self_cost)}", ""]
    text = "\n".join(lines)
    write_atomically(path, lambda partial: partial.write_text(text))


def write_pmcstat(path: Path, scale: float) -> None:
    """A pmcstat `-G` callgraph: each sampled function's callers, about 850 k lines (80 MB)."""
    program, pool, picks = sampled_program(14, int(40_000 * scale), int(2_000_000 * scale))
    counts = (np.bincount(picks, minlength=len(pool)) + 1).tolist()
    tree = call_tree([call_path[::-1] for call_path in pool], counts)
    for children in tree.children:
        children.sort(key=lambda child: -tree.total[child])
    objects = [f"/usr/local/lib/lib{file.rsplit('/', 1)[1][:-3]}.so.1" for file in program.files]
    rows = [f"@ inst_retired.any [{tree.total[0]} samples]"]
    previous_object = None
    for node, depth in tree.preorder():
        parent_total = tree.total[tree.parent[node]]
        if depth == 0:
            rows.append("")
            previous_object = None
        share = 100 * tree.total[node] / parent_total
        head = f"{' ' * depth}{'100.0' if share >= 99.995 else f'{share:05.2f}'}%  [{tree.total[node]}]"
        text = head.ljust(2 * depth + 18) + " " + program.names[tree.function[node]]
        object_name = objects[tree.function[node]]
        if object_name != previous_object:
            text += f" @ {object_name}"
            previous_object = object_name
        rows.append(text)
    rows.append("")
    write_atomically(path, lambda partial: partial.write_text("\n".join(rows)))


def write_papyrus(path: Path, scale: float) -> None:
    """A Papyrus script profiling log, about 100 MB of PUSH/POP lines on a new stack every 50 calls."""
    program, pool, _ = sampled_program(15, int(20_000 * scale), 1)
    functions = [
        f"{name.split('.')[0].lower()}_script..{name.split('.')[1]}" for name in program.names
    ]
    forms = [
        "None" if f % 4 == 0 else f"{name.split('.')[0]}Quest ({0x24021278 + f % 40:08X})"
        for f, name in enumerate(program.names)
    ]
    picker = np.random.default_rng(15)
    state = {"time": 50_002, "stack": 3053, "open": []}

    def block() -> bytes:
        lines = []
        time, stack_id, open_path = state["time"], state["stack"], state["open"]
        for pick in zipf_picks(picker, len(pool), 50).tolist():
            call_path = pool[pick]
            shared = 0
            while (
                shared < min(len(open_path), len(call_path))
                and open_path[shared] == call_path[shared]
            ):
                shared += 1
            for depth in range(len(open_path) - 1, shared - 1, -1):
                time += int(picker.integers(0, 2))
                f = open_path[depth]
                lines.append(f"{time}:POP:{stack_id}:{depth + 1}:{forms[f]}:{functions[f]}")
            for depth in range(shared, len(call_path)):
                time += int(picker.integers(0, 2))
                f = call_path[depth]
                lines.append(f"{time}:PUSH:{stack_id}:{depth + 1}:{forms[f]}:{functions[f]}")
            open_path = call_path
        for depth in range(len(open_path) - 1, -1, -1):
            time += 1
            f = open_path[depth]
            lines.append(f"{time}:POP:{stack_id}:{depth + 1}:{forms[f]}:{functions[f]}")
        state.update(time=time + 17, stack=stack_id + 1, open=[])
        return ("\n".join(lines) + "\n").encode()

    write_sized(
        path,
        int(100 * MB * scale),
        b"Script_app_quest log opened (PC)\n",
        block,
        lambda: b"Log closed\n",
    )


def write_hermes(path: Path, scale: float) -> None:
    """A Hermes sampling profile (trace events, `samples` and `stackFrames`): 1 M samples, 1 ms apart."""
    samples = int(1_000_000 * scale)
    program, pool, picks = sampled_program(16, int(10_000 * scale), samples)
    tree = call_tree(pool, [0] * len(pool))
    frames = {"1": {"name": "[root]", "category": "root"}}
    for node in range(1, len(tree.parent)):
        f = tree.function[node]
        frames[str(node + 1)] = {
            "name": f"{program.names[f]}({js_url(program, f)}:{program.lines[f]}:{1 + f % 60})",
            "category": "JavaScript",
            "parent": tree.parent[node] + 1,
        }
    times = (
        (
            11_552_125_241
            + np.cumsum(np.maximum(1, np.random.default_rng(16).normal(1000, 80, samples)))
        )
        .astype(np.int64)
        .tolist()
    )
    sample_rows = [
        b'{"cpu":"-1","name":"","ts":"%d","pid":7512,"tid":"7695","weight":"1","sf":%d}'
        % (time, tree.leaves[pick] + 1)
        for pick, time in zip(picks, times, strict=True)
    ]
    head = orjson.dumps([
        {"name": "process_name", "ph": "M", "cat": "__metadata", "pid": 7512, "ts": str(times[0]), "tid": "-1", "args": {"name": "hermes"}},
        {"name": "thread_name", "ph": "M", "cat": "__metadata", "pid": 7512, "ts": str(times[0]), "tid": "7695", "args": {"name": "mqt_js"}},
    ])  # fmt: skip
    document = b'{"traceEvents":%s,"samples":[%s],"stackFrames":%s}' % (
        head,
        b",".join(sample_rows),
        orjson.dumps(frames),
    )
    write_atomically(path, lambda partial: partial.write_bytes(document))


def python_file(program: Program, function: int) -> str:
    """The absolute path of a generated function's module."""
    return "/srv/" + program.files[function]


PYINSTRUMENT_START = [
    "MainThread\x00<thread>\x00140419501521792",
    "_run_module_as_main\x00<frozen runpy>\x00173\x01l198",
    "_run_code\x00<frozen runpy>\x0065\x01l88",
]


def write_pyinstrument_session(path: Path, scale: float) -> None:
    """A `pyinstrument -r session` file, about 100 MB of records 1 ms apart (equal neighbours merged)."""
    program, pool, _ = sampled_program(17, int(20_000 * scale), 1)
    identifiers = [
        f"{name.split('.')[1]}\x00{python_file(program, f)}\x00{line}\x01c{name.split('.')[0]}"
        for f, (name, line) in enumerate(zip(program.names, program.lines, strict=True))
    ]
    stem = [*PYINSTRUMENT_START, "<module>\x00/srv/app/main.py\x001\x01l12"]
    stacks = [
        orjson.dumps(stem + [f"{identifiers[f]}\x01l{program.lines[f] + 3}" for f in call_path])
        for call_path in pool
    ]
    picker = np.random.default_rng(17)
    state = {"samples": 0, "seconds": 0.0}

    def block() -> bytes:
        picks = zipf_picks(picker, len(pool), 500).tolist()
        records = []
        for pick, group in itertools.groupby(picks):
            repeats = len(list(group))
            seconds = float(np.sum(picker.normal(0.001, 0.00005, repeats)))
            state["samples"] += repeats
            state["seconds"] += seconds
            records.append(b"[%s,%r]" % (stacks[pick], seconds))
        return b",".join(records)

    records = []
    written = 0
    while written < int(100 * MB * scale):
        records.append(block())
        written += len(records[-1])
    header = {
        "start_time": 1795995073.426904, "duration": state["seconds"], "min_interval": 0.001,
        "max_interval": 0.001, "sample_count": state["samples"], "start_call_stack": PYINSTRUMENT_START,
        "target_description": "Program: app/main.py", "cpu_time": state["seconds"] * 0.9,
        "sys_path": ["/srv/app"], "sys_prefixes": ["/usr/local"],
    }  # fmt: skip
    document = orjson.dumps(header)[:-1] + b',"frame_records":[%s]}' % b",".join(records)
    write_atomically(path, lambda partial: partial.write_bytes(document))


def write_pyinstrument_json(path: Path, scale: float) -> None:
    """A `pyinstrument -r json` call tree of about 400 k nodes (90 MB), 1 ms samples."""
    program, tree = tree_program(18, int(25_000 * scale))
    head = (
        b'{"start_time": 1795995249.242720,"duration": %.6f,"sample_count": %d,'
        b'"target_description": "Program: app/main.py","cpu_time": %.6f,"root_frame": '
        % (tree.total[0] / 1000, tree.total[0], tree.total[0] / 1100)
    )

    def node_json(node: int) -> tuple[bytes, bytes]:
        if node == 0:
            name, file, line, class_name = "<module>", "/srv/app/main.py", 1, ""
        else:
            f = tree.function[node]
            class_name, name = program.names[f].split(".")
            file, line = python_file(program, f), program.lines[f]
        opener = (
            b'{"function": "%s","file_path_short": "%s","file_path": "%s","line_no": %d,'
            b'"time": %.6f,"await_time": 0.000000,"is_application_code": true,"children": ['
            % (name.encode(), file[5:].encode(), file.encode(), line, tree.total[node] / 1000)
        )
        return opener, b'],"class_name": "%s"}' % class_name.encode() if class_name else b"]}"

    document = head + nested_json(tree, node_json, b",") + b"}"
    write_atomically(path, lambda partial: partial.write_bytes(document))


def write_austin(path: Path, scale: float) -> None:
    """Austin 3 wall-time samples of four threads, about 100 MB, with its header and footer."""
    program, pool, _ = sampled_program(19, int(20_000 * scale), 1)
    frames = [
        f"{python_file(program, f)}:{name}:{line + 3}"
        for f, (name, line) in enumerate(zip(program.names, program.lines, strict=True))
    ]
    stacks = [";".join(frames[f] for f in call_path).encode() for call_path in pool]
    threads = [
        b"P4317;T0:7ffb7f8b%04x;/srv/app/main.py:<module>:12;" % (0x700 + t) for t in range(4)
    ]
    picker = np.random.default_rng(19)
    state = {"samples": 0, "micros": 0}

    def block() -> bytes:
        picks = zipf_picks(picker, len(pool), 1000).tolist()
        times = np.maximum(1, picker.normal(100, 15, len(picks))).astype(np.int64).tolist()
        state["samples"] += len(picks)
        state["micros"] += sum(times)
        return b"".join(
            b"%s%s %d\n" % (threads[i % 4], stacks[p], t)
            for i, (p, t) in enumerate(zip(picks, times, strict=True))
        )

    write_sized(
        path,
        int(100 * MB * scale),
        b"# austin: 3.6.0\n# interval: 100\n# mode: wall\n# python: 3.11.7\n\n",
        block,
        lambda: (
            b"\n# duration: %d\n# samples: %d\n# saturation: 0/%d\n# errors: 0/%d\n"
            % (state["micros"] // 4, state["samples"], state["samples"], state["samples"])
        ),
    )


def rust_legacy_symbol(path: list[str], seed: int) -> str:
    """A Rust symbol in the legacy mangling rustc uses by default: ``_ZN3app6parser...17h<hash>E``."""
    return (
        "_ZN"
        + "".join(f"{len(part)}{part}" for part in path)
        + f"17h{(seed + 1) * 0x9E3779B97F4A7C15 % 2**64:016x}E"
    )


def write_perf_script(path: Path, scale: float) -> None:
    """`perf script` of a Rust program's `perf record -g` (4 threads, 1 kHz), about 100 MB."""
    program, pool, _ = sampled_program(20, int(20_000 * scale), 1)
    binary = "/srv/app/target/release/app"
    frames = []
    for f, name in enumerate(program.names):
        kind, method = name.split(".")
        symbol = rust_legacy_symbol(["app", kind.lower(), kind, method], f)
        frames.append(f"{0x55D4C1400000 + 0x400 * f:x} {symbol}+0x{0x20 + f % 0x3C0:x} ({binary})")
    outer = [
        f"55d4c1467b30 {rust_legacy_symbol(['std', 'rt', 'lang_start'], 1)}+0x50 ({binary})",
        "7f3a2c029d90 __libc_start_main+0x80 (/usr/lib/x86_64-linux-gnu/libc.so.6)",
        f"55d4c1467a30 _start+0x25 ({binary})",
    ]
    stacks = [
        "".join(
            f"\t    {frame}\n" for frame in [*(frames[f] for f in reversed(call_path)), *outer]
        ).encode()
        for call_path in pool
    ]
    picker = np.random.default_rng(20)
    clock = [198_792.736893]

    def block() -> bytes:
        picks = zipf_picks(picker, len(pool), 400).tolist()
        events = []
        for i, pick in enumerate(picks):
            if i % 4 == 0:
                clock[0] += 0.001
            events.append(
                b"app %d/%d %.6f:    1000000 cpu-clock:ppp: \n%s\n"
                % (4242, 4242 + i % 4, clock[0] + 0.000013 * (i % 4), stacks[pick])
            )
        return b"".join(events)

    write_sized(path, int(100 * MB * scale), b"", block, lambda: b"")


INPUTS = [
    BenchInput("collapsed", "collapsed-100MB.txt", write_collapsed),
    BenchInput("cpuprofile", "node-1M-samples.cpuprofile", write_cpuprofile),
    BenchInput("chrome-trace", "trace-2M-events.json", write_chrome_trace),
    BenchInput("pprof", "go-cpu-1M-samples.pb.gz", write_pprof),
    BenchInput("firefox", "firefox-1M-samples.json", write_firefox),
    BenchInput("safari", "safari-100MB-recording.json", write_safari),
    BenchInput("instruments", "instruments-deep-copy-100MB.txt", write_instruments),
    BenchInput("v8-log", "isolate-0x5581a3c4e2a0-4242-v8-100MB.log", write_v8_log),
    BenchInput("v8-json", "v8-prof-100MB.v8log.json", write_v8_json),
    BenchInput("heapprofile", "node-400k-nodes.heapprofile", write_heapprofile),
    BenchInput("stackprof", "stackprof-125k-samples.json", write_stackprof),
    BenchInput("ghc-prof", "ghc-1M-nodes.prof", write_ghc_prof),
    BenchInput("callgrind", "callgrind-50MB.out", write_callgrind),
    BenchInput("pmcstat", "pmcstat-callgraph-80MB.txt", write_pmcstat),
    BenchInput("papyrus", "papyrus-script-100MB.log", write_papyrus),
    BenchInput("hermes", "hermes-1M-samples.json", write_hermes),
    BenchInput("pyinstrument", "pyinstrument-100MB.pyisession", write_pyinstrument_session),
    BenchInput("pyinstrument-json", "pyinstrument-400k-nodes.json", write_pyinstrument_json),
    BenchInput("austin", "austin-100MB.austin", write_austin),
    BenchInput("perf-script", "perf-rust-100MB.txt", write_perf_script),
]

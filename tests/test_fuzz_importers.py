"""Robustness of every importer: hostile input loads or fails with a FormatError, nothing else.

Each importer in `flamesight.formats.FORMAT_MODULES` gets random bytes and
mutations of valid files (real ones from the conformance corpus and tiny ones
built here): truncated, bit-flipped, bytes inserted, deleted or duplicated,
numbers replaced by huge, negative or non-finite values, JSON values replaced
by values of another type. Every input goes to the module's own `parse` and
to `flamesight.formats.load`. A `ProfileGroup` (whose tables are consistent)
or a `FormatError` passes; any other exception, a call slower than
`SLOW_CALL_SECONDS`, or a hang (pytest-timeout) fails.

The examples are derandomized so CI sees the same cases on every run. To hunt
for new bugs, run with fresh randomness and more examples::

    FLAMESIGHT_FUZZ_RANDOM=1 FLAMESIGHT_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz_importers.py
"""

from __future__ import annotations

import cProfile
import functools
import gzip
import importlib
import marshal
import os
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flamesight.analysis import top_functions
from flamesight.formats import FORMAT_MODULES, FormatError, load
from flamesight.model import ProfileGroup, ProfileTooLarge, limits_in_force

FORMATS_DIR = Path(__file__).resolve().parents[1] / "src" / "flamesight" / "formats"
PROFILES = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "profiles"

EXAMPLES = int(os.environ.get("FLAMESIGHT_FUZZ_EXAMPLES", "120"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=not os.environ.get("FLAMESIGHT_FUZZ_RANDOM"),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
SLOW_CALL_SECONDS = 5.0
"""No call on these small inputs may take longer; slower means a quadratic path or a near-hang."""

# Caps that keep a mutated length or count from making one example allocate gigabytes.
FUZZ_LIMITS = {"max_samples": 2_000_000, "max_frames": 1_000_000}

# Real files (small ones) per importer, paths under the conformance `profiles/` folder.
CORPUS_SEEDS = {
    "speedscope": [
        "speedscope/0.0.1/simple.speedscope.json",
        "speedscope/0.0.1/simple-no-pretty-print.speedscope.json",
        "speedscope/0.1.2/simple-sampled.speedscope.json",
        "speedscope/0.6.0/two-sampled.speedscope.json",
        "speedscope/invalid/out-of-order-events.json",
    ],
    "chrome_cpuprofile": [
        "Chrome/65/simple.cpuprofile",
        "node/10.11.0/example.cpuprofile",
    ],
    "chrome_trace": [
        "trace-event/simple.json",
        "trace-event/simple-object.json",
        "trace-event/simple-partial.json",
        "trace-event/simple-partial-trailing-comma.json",
        "trace-event/matching-x.json",
        "trace-event/bex-interaction.json",
        "trace-event/multiprocess.json",
        "trace-event/simple-with-samples.json",
        "trace-event/multi-thread-with-samples.json",
        "trace-event/simple-hermes.json",
        "trace-event/out-of-order.json",
        "trace-event/too-many-end-events.json",
        "Chrome/141/no-arg-data.json",
    ],
    "cprofile": [],
    "pprof": ["pprof/simple.prof"],
    "instruments": [
        "Instruments/7.3.1/simple-time-profile-deep-copy.txt",
        "Instruments/7.3.1/random-allocations-deep-copy.txt",
        "Instruments/13.4/cycles-example-deep-copy.txt",
    ],
    "callgrind": [
        "callgrind/callgrind.example.log",
        "callgrind/callgrind.cfn-reset.log",
        "callgrind/callgrind.multiple-event-types.log",
        "callgrind/callgrind.name-compression.log",
        "callgrind/callgrind.subposition-compression.log",
    ],
    "pmcstat": [
        "pmcstat/simple.txt",
        "pmcstat/simple-with-invalids.txt",
    ],
    "perf_script": [
        "linux-perf/simple.linux-perf.txt",
        "linux-perf/one-sample.linux-perf.txt",
    ],
    "stackprof": [
        "stackprof/object-stackprof.json",
        "stackprof/stackprof-last-frame-no-name.json",
    ],
    "ghc_prof": ["haskell/simple.prof"],
    "pyinstrument": [],
    "papyrus": ["papyrus/script.log", "papyrus/stack.log"],
    "austin": [],
    "jfr": ["java-flight-recorder/heavy.jfr"],
    "chrome_heapprofile": ["node/10.11.0/Heap-20181003T105432.heapprofile"],
    "firefox": ["Firefox/61/recursion.json"],
    "safari": ["Safari/13.1/simple.html-recording.json"],
    "v8_prof": ["node/8.5.0/isolate-0x102802600-v8.log"],
    "collapsed": [
        "stackcollapse/simple.txt",
        "stackcollapse/recursion.txt",
        "stackcollapse/alternating.txt",
        "stackcollapse/simple-crlf.txt",
        "stackcollapse/simple-utf16-le.txt",
        "stackcollapse/simple-utf16-be.txt",
        "stackcollapse/simple-with-invalids.txt",
        "stackcollapse/tall.txt",
    ],
}


def importer(name: str) -> ModuleType:
    """The importer module `name`, or a skip while it has not been written yet."""
    if not (FORMATS_DIR / f"{name}.py").is_file():
        pytest.skip(f"flamesight.formats.{name} does not exist yet")
    return importlib.import_module(f"flamesight.formats.{name}")


# tiny valid files built here


def pstats_bytes(stats: dict) -> bytes:
    """A pstats file as `pstats.Stats.dump_stats` writes it (marshal of the stats dict)."""
    return marshal.dumps(stats)


def synthetic_pstats() -> bytes:
    """main -> parse -> (walk recursive), plus a builtin, with fixed numbers."""
    main = ("app.py", 1, "main")
    parse = ("app.py", 10, "parse")
    walk = ("tree.py", 5, "walk")
    builtin = ("~", 0, "<built-in method builtins.len>")
    return pstats_bytes(
        {
            main: (1, 1, 0.01, 1.0, {}),
            parse: (2, 2, 0.2, 0.9, {main: (2, 2, 0.2, 0.9)}),
            walk: (3, 7, 0.5, 0.65, {parse: (3, 3, 0.4, 0.6), walk: (4, 4, 0.1, 0.3)}),
            builtin: (9, 9, 0.05, 0.05, {walk: (9, 9, 0.05, 0.05)}),
        }
    )


def recorded_pstats() -> bytes:
    """A pstats file recorded by cProfile from a small recursive workload."""

    def fibonacci(n: int) -> int:
        return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)

    profiler = cProfile.Profile()
    profiler.enable()
    fibonacci(12)
    sorted(range(100), key=str)
    profiler.disable()
    profiler.create_stats()
    return pstats_bytes(profiler.stats)


def tiny_pprof() -> list[bytes]:
    """A two-sample-type pprof built with the checked-in protobuf code, when it exists."""
    if not (FORMATS_DIR / "pprof_pb2.py").is_file():
        return []
    pprof_pb2 = importlib.import_module("flamesight.formats.pprof_pb2")
    profile = pprof_pb2.Profile()
    profile.string_table.extend(
        ["", "samples", "count", "cpu", "nanoseconds", "main", "work", "m.go"]
    )
    profile.sample_type.add(type=1, unit=2)
    profile.sample_type.add(type=3, unit=4)
    profile.function.add(id=1, name=5, filename=7, start_line=1)
    profile.function.add(id=2, name=6, filename=7, start_line=9)
    profile.location.add(id=1, address=0x1000).line.add(function_id=1, line=3)
    profile.location.add(id=2, address=0x2000).line.add(function_id=2, line=11)
    profile.sample.add(location_id=[2, 1], value=[3, 30_000_000])
    profile.sample.add(location_id=[1], value=[1, 10_000_000])
    profile.period_type.type = 3
    profile.period_type.unit = 4
    profile.period = 10_000_000
    profile.duration_nanos = 40_000_000
    return [profile.SerializeToString()]


INLINE_SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "speedscope": lambda: [
        orjson.dumps(
            {
                "$schema": "https://www.speedscope.app/file-format-schema.json",
                "shared": {"frames": [{"name": "a"}, {"name": "b", "file": "b.js", "line": 3}]},
                "profiles": [
                    {
                        "type": "evented",
                        "name": "events",
                        "unit": "milliseconds",
                        "startValue": 0,
                        "endValue": 10,
                        "events": [
                            {"type": "O", "frame": 0, "at": 0},
                            {"type": "O", "frame": 1, "at": 2},
                            {"type": "C", "frame": 1, "at": 6},
                            {"type": "C", "frame": 0, "at": 10},
                        ],
                    },
                    {
                        "type": "sampled",
                        "name": "samples",
                        "unit": "bytes",
                        "startValue": 0,
                        "endValue": 7,
                        "samples": [[0, 1], [0], [1, 0, 1]],
                        "weights": [4, 2, 1],
                    },
                ],
                "activeProfileIndex": 1,
                "exporter": "flamesight tests",
                "name": "tiny",
            }
        )
    ],
    "chrome_cpuprofile": lambda: [
        orjson.dumps(
            {
                "nodes": [
                    {
                        "id": 1,
                        "callFrame": {
                            "functionName": "(root)",
                            "url": "",
                            "lineNumber": -1,
                            "columnNumber": -1,
                            "scriptId": "0",
                        },
                        "children": [2],
                    },
                    {
                        "id": 2,
                        "callFrame": {
                            "functionName": "main",
                            "url": "a.js",
                            "lineNumber": 0,
                            "columnNumber": 4,
                            "scriptId": "1",
                        },
                        "children": [3, 4],
                    },
                    {
                        "id": 3,
                        "callFrame": {
                            "functionName": "",
                            "url": "a.js",
                            "lineNumber": 9,
                            "columnNumber": 0,
                            "scriptId": "1",
                        },
                    },
                    {
                        "id": 4,
                        "callFrame": {
                            "functionName": "(garbage collector)",
                            "url": "",
                            "lineNumber": -1,
                            "columnNumber": -1,
                            "scriptId": "0",
                        },
                    },
                ],
                "startTime": 1000,
                "endTime": 1600,
                "samples": [2, 3, 3, 4, 2, 1],
                "timeDeltas": [10, 100, 100, 100, 100, 100],
            }
        )
    ],
    "chrome_trace": lambda: [
        orjson.dumps(
            [
                {"ph": "M", "name": "thread_name", "pid": 1, "tid": 2, "args": {"name": "Main"}},
                {"ph": "B", "name": "outer", "ts": 0, "pid": 1, "tid": 2},
                {
                    "ph": "X",
                    "name": "inner",
                    "ts": 5,
                    "dur": 10,
                    "pid": 1,
                    "tid": 2,
                    "args": {"x": 1},
                },
                {"ph": "E", "name": "outer", "ts": 20, "pid": 1, "tid": 2},
                {"ph": "B", "name": "other", "ts": 3, "pid": 1, "tid": 3},
                {"ph": "E", "ts": 9, "pid": 1, "tid": 3},
            ]
        ),
        orjson.dumps(
            {
                "traceEvents": [
                    {
                        "ph": "P",
                        "cat": "disabled-by-default-v8.cpu_profiler",
                        "name": "Profile",
                        "id": "0x1",
                        "pid": 1,
                        "tid": 2,
                        "ts": 100,
                        "args": {"data": {"startTime": 100}},
                    },
                    {
                        "ph": "P",
                        "cat": "disabled-by-default-v8.cpu_profiler",
                        "name": "ProfileChunk",
                        "id": "0x1",
                        "pid": 1,
                        "tid": 2,
                        "ts": 200,
                        "args": {
                            "data": {
                                "cpuProfile": {
                                    "nodes": [
                                        {
                                            "id": 1,
                                            "callFrame": {
                                                "functionName": "(root)",
                                                "url": "",
                                                "scriptId": 0,
                                            },
                                        },
                                        {
                                            "id": 2,
                                            "parent": 1,
                                            "callFrame": {
                                                "functionName": "run",
                                                "url": "r.js",
                                                "scriptId": 1,
                                                "lineNumber": 2,
                                            },
                                        },
                                    ],
                                    "samples": [2, 2, 1],
                                },
                                "timeDeltas": [5, 10, 10],
                            }
                        },
                    },
                ],
                "displayTimeUnit": "ms",
            }
        ),
    ],
    "cprofile": lambda: [synthetic_pstats(), recorded_pstats()],
    "pprof": tiny_pprof,
    "perf_script": lambda: [
        b"python 4321/4322  1000.000100:     250000 cpu-clock:u: \n"
        b"\t    55d0c3a0 work (/usr/bin/python3.11)\n"
        b"\t    55d0b000 main (/usr/bin/python3.11)\n"
        b"\n"
        b"python 4321/4322  1000.000350:     250000 cpu-clock:u: \n"
        b"\t    55d0b000 main (/usr/bin/python3.11)\n"
        b"\n",
        b"app 7/7 5.000000: 1 cycles:\n"
        b"\t 1 _ZN3std2fs8Metadata7created17h8df207f105c5d474E+0x4 (/bin/app)\n"
        b"\t 2 _RINvNtC3std3mem8align_ofdE (/bin/app)\n"
        b"\t 3 _RNvMsr_NtCs3ssYzQotkvD_3std4pathNtB5_7PathBuf3new (/bin/app)\n"
        b"\n"
        b"app 7/7 5.000100: 1 cycles:\n"
        b"\t 3 _RNvMsr_NtCs3ssYzQotkvD_3std4pathNtB5_7PathBuf3new (/bin/app)\n"
        b"\n",
    ],
    "instruments": lambda: [
        "Weight\tSelf Weight\tSymbol Names\n"
        "2.50 s  100.0%\t0 s\t   start\n"
        "2.00 s  80.0%\t1.50 s\t    main\n"
        "500.00 ms  \u20070.0%\t500.00 ms\t     work\n"
        "500.00 ms  20.0%\t500.00 ms\t    idle\n".encode(),
        b"Bytes Used\tCount\tSource Path\tSymbol Name\n"
        b"1.50 KB  100.0%\t3\tmain.c\tmain\n"
        b"512 Bytes  33.3%\t1\tlib.c\t leak\n",
    ],
    "callgrind": lambda: [
        b"# callgrind format\nversion: 1\npositions: instr line\nevents: Ir Dr\n\n"
        b"fl=(1) main.c\nfn=(1) main\n0x10 3 5 1\n+2 * 2\ncfn=(2) fib\ncalls=1 0x40 9\n* 9 40 4\n\n"
        b"fn=(2)\n0x40 9 10 1\nfi=(2) inline.h\n+4 2 3\nfe=(1)\ncfn=(2)\ncalls=3 0x40 9\n* 9 27 3\n",
    ],
    "pmcstat": lambda: [
        b"@ cycles [10 samples]\n\n"
        b"60.00%  [6]     leaf @ /bin/app\n"
        b" 100.0%  [6]      main\n\n"
        b"40.00%  [4]     other @ /lib/libc.so\n"
        b" 75.00%  [3]      leaf @ /bin/app\n"
        b"  100.0%  [3]       main\n"
        b" 25.00%  [1]      main\n",
    ],
    "stackprof": lambda: [
        orjson.dumps(
            {
                "mode": mode,
                "interval": 1000,
                "frames": {
                    "1": {"name": "<main>", "file": "a.rb", "line": 1},
                    "2": {"name": "Object#work", "file": "a.rb", "line": 5},
                    "3": {"name": "(garbage collection)"},
                },
                "raw": [2, 1, 2, 3, 1, 3, 2, 1, 1, 1],
                "raw_timestamp_deltas": [900, 1100, 1000, 1000, 950, 1050],
            }
        )
        for mode in ("wall", "cpu", "object")
    ],
    "ghc_prof": lambda: [
        orjson.dumps(
            {
                "program": "tiny",
                "tick_interval": 1000,
                "total_ticks": 5,
                "rts_arguments": ["-pj"],
                "cost_centres": [
                    {"id": 1, "label": "MAIN", "module": "MAIN", "src_loc": "<built-in>"},
                    {"id": 2, "label": "work", "module": "Main", "src_loc": "Main.hs:3:1-9"},
                ],
                "profile": {
                    "id": 1,
                    "entries": 0,
                    "alloc": 8,
                    "ticks": 1,
                    "children": [{"id": 2, "entries": 2, "alloc": 64, "ticks": 4, "children": []}],
                },
            }
        )
    ],
    "pyinstrument": lambda: [
        orjson.dumps(
            {
                "start_time": 1.0,
                "duration": 0.3,
                "sample_count": 3,
                "start_call_stack": ["MainThread\x00<thread>\x001"],
                "target_description": "Program: a.py",
                "cpu_time": 0.2,
                "frame_records": [
                    [["MainThread\x00<thread>\x001", "main\x00a.py\x001\x01l3"], 0.1],
                    [
                        [
                            "MainThread\x00<thread>\x001",
                            "main\x00a.py\x001\x01l4",
                            "work\x00a.py\x009\x01cK\x01l10",
                        ],
                        0.2,
                    ],
                ],
            }
        ),
        orjson.dumps(
            {
                "start_time": 1.0,
                "duration": 0.3,
                "sample_count": 3,
                "target_description": "Program: a.py",
                "cpu_time": 0.2,
                "root_frame": {
                    "function": "main",
                    "file_path": "a.py",
                    "line_no": 1,
                    "time": 0.3,
                    "children": [
                        {"function": "work", "file_path": "a.py", "line_no": 9, "time": 0.2},
                        {"function": "[self]", "file_path": "", "line_no": 0, "time": 0.05},
                    ],
                },
            }
        ),
    ],
    "papyrus": lambda: [
        b"Script_tiny log opened (PC)\n"
        b"100:PUSH:7:1:None:quest..outer\n"
        b"150:PUSH:7:2:None:quest..inner\n"
        b"150:POP:7:2:None:quest..inner\n"
        b"400:POP:7:1:None:quest..outer\n"
        b"Log closed\n"
    ],
    "jfr": lambda: [],
    "austin": lambda: [
        b"# austin: 3.6.0\n# interval: 100\n# mode: wall\n\n"
        b"P42;T0:7f01;/app/main.py:<module>:1;/app/main.py:work:12 1042\n"
        b"P42;T0:7f01;/app/main.py:<module>:1 8\n"
        b"P42;T0:7f02 100\n\n# duration: 1150\n",
        b"# mode: full\nP1;T1;a.py:f:1;a.py:g:2 10,0,-64\nP1;T1;a.py:f:1 5,1,128\n",
    ],
    "chrome_heapprofile": lambda: [
        orjson.dumps(
            {
                "head": {
                    "callFrame": {"functionName": "(root)", "url": "", "lineNumber": -1},
                    "selfSize": 0,
                    "id": 1,
                    "children": [
                        {
                            "callFrame": {"functionName": "", "url": "/a/b.js", "lineNumber": 3},
                            "selfSize": 64,
                            "id": 2,
                            "children": [],
                        }
                    ],
                },
                "samples": [{"size": 64, "nodeId": 2, "ordinal": 1}],
            }
        )
    ],
    "firefox": lambda: [
        orjson.dumps(
            {
                "meta": {"version": 12, "startTime": 1000.0},
                "libs": [],
                "threads": [
                    {
                        "name": "GeckoMain",
                        "samples": {
                            "schema": {"stack": 0, "time": 1},
                            "data": [[1, 1.0], [0, 2.5], [None, 4.0]],
                        },
                        "stackTable": {
                            "schema": {"prefix": 0, "frame": 1},
                            "data": [[None, 0], [0, 1]],
                        },
                        "frameTable": {"schema": {"location": 0}, "data": [[0], [1]]},
                        "stringTable": ["main (file:///a.js:1:0)", "leaf (file:///a.js:5:2)"],
                    }
                ],
                "processes": [],
            }
        )
    ],
    "safari": lambda: [
        orjson.dumps(
            {
                "version": 1,
                "recording": {
                    "displayName": "Recording",
                    "sampleStackTraces": [
                        {
                            "timestamp": 1.0,
                            "stackFrames": [{"name": "f", "url": "a.js", "line": 1, "column": 2}],
                        },
                        {"timestamp": 1.5, "stackFrames": []},
                    ],
                    "sampleDurations": [0.001, 0.002],
                },
            }
        )
    ],
    "v8_prof": lambda: [
        b'{"code": [{"name": "/usr/bin/node", "type": "SHARED_LIB"}, '
        b'{"name": "f /a.js:1:10", "type": "JS", "kind": "Opt"}], '
        b'"functions": [], "ticks": [{"tm": 5, "vm": 0, "s": [1, 0, 0, 12]}, {"tm": 9, "vm": 0, "s": [-1, 7]}]}',
        b"v8-version,11,3,244,8,0,0\n"
        b"shared-library,/usr/bin/node,0x400000,0x800000,0\n"
        b"code-creation,JS,10,100,0x10000000,64,f /a.js:1:10,0x20000000,~\n"
        b"tick,0x10000010,500,0,0x0,0,0x400100\n"
        b"code-move,0x10000000,0x10001000\n"
        b"tick,0x10001010,900,0,0x0,0,+10,overflow\n",
    ],
    "collapsed": lambda: [
        b"main;parse;walk;walk 10\nmain;emit 3\nmain 1\n",
        b"java.lang.Thread.run;app.Server.handle_[j] 7\r\n[unknown];kernel`do_syscall_64_[k] 2\r\n",
    ],
}


@functools.cache
def seed_files(name: str) -> tuple[tuple[str, bytes], ...]:
    """Inputs of importer `name` as (label, bytes): small conformance files (decompressed) and inline ones."""
    found = []
    for relative in CORPUS_SEEDS[name]:
        path = PROFILES / relative
        if path.is_file():
            data = path.read_bytes()
            found.append(
                (relative, gzip.decompress(data) if data.startswith(b"\x1f\x8b") else data)
            )
    found.extend((f"inline {name} #{i}", data) for i, data in enumerate(INLINE_SEEDS[name]()))
    return tuple(found)


def seeds(name: str) -> tuple[bytes, ...]:
    """The bytes of every seed of importer `name`, valid or deliberately invalid."""
    return tuple(data for _label, data in seed_files(name))


# mutations


HOSTILE_NUMBERS = (
    b"-1",
    b"0",
    b"-0",
    b"1e308",
    b"-1e308",
    b"1e400",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"inf",
    b"99999999999999999999999999999",
    b"-9223372036854775809",
    b"9223372036854775807",
    b"4294967296",
    b"0.5",
    b"1e-320",
    b"0x10",
    b"",
)
HOSTILE_VALUES = (
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"[[]]",
    b'""',
    b"0",
    b"-1",
    b'"\\ud800"',
    b'{"a":[1]}',
)
INTERESTING_BYTES = (
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b";",
    b" ",
    b"\n",
    b"\r\n",
    b"\t",
    b"\x00",
    b"\xff",
    b"\xfe\xff",
    b"\xef\xbb\xbf",
    b"\xc3",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\x08\x80\x80\x80\x80\x10",
    b"\x0a\xff\xff\xff\x0f",
    b"\x9b\x06",
)
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
JSON_STRING = re.compile(rb'"(?:[^"\\\n]|\\.){0,200}"')


def _position(draw: st.DrawFn, data: bytearray) -> int:
    return draw(st.integers(0, len(data)))


def truncate(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Cut the input at a random point."""
    return data[: _position(draw, data)]


def flip_bit(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Flip one bit."""
    if data:
        index = draw(st.integers(0, len(data) - 1))
        data[index] ^= 1 << draw(st.integers(0, 7))
    return data


def insert_bytes(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Insert random or syntax-significant bytes."""
    at = _position(draw, data)
    data[at:at] = draw(
        st.one_of(st.sampled_from(INTERESTING_BYTES), st.binary(min_size=1, max_size=16))
    )
    return data


def delete_bytes(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Delete a short run of bytes."""
    at = _position(draw, data)
    del data[at : at + draw(st.integers(1, 64))]
    return data


def duplicate_bytes(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Copy a stretch of the input somewhere else (repeated records, nested copies)."""
    start = _position(draw, data)
    piece = data[start : start + draw(st.integers(1, 512))]
    at = _position(draw, data)
    data[at:at] = piece * draw(st.integers(1, 4))
    return data


def replace_number(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Replace one number of a text format by a huge, negative, non-finite or malformed one."""
    numbers = list(NUMBER.finditer(data))
    if numbers:
        match = numbers[draw(st.integers(0, len(numbers) - 1))]
        data[match.start() : match.end()] = draw(st.sampled_from(HOSTILE_NUMBERS))
    return data


def replace_json_value(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Replace one string or number by a JSON value of another type."""
    tokens = list(JSON_STRING.finditer(data)) + list(NUMBER.finditer(data))
    if tokens:
        match = tokens[draw(st.integers(0, len(tokens) - 1))]
        data[match.start() : match.end()] = draw(st.sampled_from(HOSTILE_VALUES))
    return data


def stretch_token(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Make one string or number very long (long names, long lines, long digit runs)."""
    tokens = list(JSON_STRING.finditer(data)) + list(NUMBER.finditer(data))
    if tokens:
        match = tokens[draw(st.integers(0, len(tokens) - 1))]
        middle = (match.start() + match.end()) // 2
        data[middle:middle] = data[middle - 1 : middle] * draw(st.sampled_from([1000, 100_000]))
    return data


JSON_REPLACEMENTS = (
    None,
    True,
    False,
    0,
    -1,
    1.5,
    -(2**63),
    2**64 - 1,
    1e308,
    -1e308,
    "",
    "x",
    "\u0000",
    "(root)",
    [],
    {},
    [[]],
    [None],
    [-1, 0, 2**63 - 1],
    {"id": "1", "callFrame": None, "children": [1, 1]},
)


def mutate_json_structure(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Parse as JSON and replace, delete or duplicate one value anywhere in the tree (types, shapes)."""
    try:
        document = orjson.loads(bytes(data))
    except orjson.JSONDecodeError:
        return data
    slots: list[tuple[list | dict, int | str]] = []
    pending: list[object] = [document]
    while pending:  # iterative: the tree may be deep
        value = pending.pop()
        items = (
            enumerate(value)
            if isinstance(value, list)
            else value.items()
            if isinstance(value, dict)
            else ()
        )
        for key, child in items:
            slots.append((value, key))
            pending.append(child)
    if not slots:
        return bytearray(orjson.dumps(draw(st.sampled_from(JSON_REPLACEMENTS))))
    container, key = slots[draw(st.integers(0, len(slots) - 1))]
    action = draw(st.sampled_from(["replace", "delete", "duplicate"]))
    if action == "replace":
        container[key] = draw(st.sampled_from(JSON_REPLACEMENTS))  # type: ignore[index]
    elif action == "delete":
        del container[key]  # type: ignore[arg-type]
    elif isinstance(container, list):
        container.insert(int(key), container[int(key)])
    else:
        container[str(key) + "_"] = container[key]
    return bytearray(orjson.dumps(document))


MUTATIONS = (
    truncate,
    flip_bit,
    insert_bytes,
    delete_bytes,
    duplicate_bytes,
    replace_number,
    replace_json_value,
    stretch_token,
    mutate_json_structure,
    mutate_json_structure,
)


@st.composite
def mutated_inputs(draw: st.DrawFn, name: str) -> bytes:
    """A valid input of importer `name` with one to four mutations applied."""
    data = bytearray(draw(st.sampled_from(seeds(name))))
    for _ in range(draw(st.integers(1, 4))):
        data = draw(st.sampled_from(MUTATIONS))(draw, data)
    return bytes(data)


@st.composite
def random_inputs(draw: st.DrawFn, name: str) -> bytes:
    """Random bytes, alone or after the start of a valid input (so that sniffing accepts it)."""
    noise = draw(st.binary(max_size=2000))
    if draw(st.booleans()):
        return noise
    seed = draw(st.sampled_from(seeds(name)))
    return seed[: draw(st.integers(0, len(seed)))] + noise


# the checks


def check_group(group: object, where: str) -> None:
    """A returned group must be usable: consistent tables, finite non-negative weights, a working top."""
    assert isinstance(group, ProfileGroup), f"{where} returned {type(group).__name__}"
    assert 0 <= group.active_index < max(len(group.profiles), 1), (
        f"{where}: active_index out of range"
    )
    for profile in group.profiles:
        stacks, samples = profile.stacks, profile.samples
        assert len(samples.stack) == len(samples.time) == len(samples.weight)
        assert len(stacks.parent) == len(stacks.frame)
        assert np.all(stacks.parent < np.arange(len(stacks))), (
            f"{where}: a stack's parent comes after it"
        )
        assert np.all((stacks.frame >= 0) & (stacks.frame < len(profile.frames)))
        assert np.all((samples.stack >= -1) & (samples.stack < len(stacks)))
        assert np.all(np.diff(samples.time) >= 0), f"{where}: samples not sorted by time"
        assert np.all(np.isfinite(samples.time)), (
            f"{where}: non-finite sample time in {profile.name!r}"
        )
        assert np.all(np.isfinite(samples.weight)), (
            f"{where}: non-finite weight in {profile.name!r}"
        )
        assert np.all(samples.weight >= 0), f"{where}: negative weight in {profile.name!r}"
        top_functions(profile, n=5)


def call_bounded(call: Callable[[], object], where: str) -> object:
    """Run an importer call; return its result or its FormatError, fail on anything else or when slow."""
    began = time.perf_counter()
    try:
        result: object = call()
    except FormatError as error:
        result = error
    elapsed = time.perf_counter() - began
    assert elapsed < SLOW_CALL_SECONDS, f"{where} took {elapsed:.1f} s"
    return result


def check_parse(module: ModuleType, data: bytes) -> None:
    """Feed `data` to the module's `parse` and `sniff`: only a good group or a FormatError may come out."""
    with limits_in_force(**FUZZ_LIMITS):
        try:
            parsed = call_bounded(lambda: module.parse(data, "x"), f"{module.__name__}.parse")
        except ProfileTooLarge:
            parsed = None  # load turns it into a FormatError; a cap is not a crash
        if isinstance(parsed, FormatError):
            assert parsed.format_title and parsed.where and parsed.problem, repr(parsed)
        elif parsed is not None:
            check_group(parsed, f"{module.__name__}.parse")
        for cut in (len(data), 1, 7, 100):
            assert module.sniff(data[:cut]) in (True, False)


def check_load(data: bytes) -> None:
    """Feed `data` to `load`: only a good group or a FormatError may come out."""
    with limits_in_force(**FUZZ_LIMITS):
        loaded = call_bounded(lambda: load(data), "load")
    if not isinstance(loaded, FormatError):
        check_group(loaded, "load")


def missing_importers() -> list[str]:
    """Importers not written yet (`load` imports them all, so it waits for them)."""
    return [name for name in FORMAT_MODULES if not (FORMATS_DIR / f"{name}.py").is_file()]


def require_load() -> None:
    """Skip while `load` cannot run because some importer is not written yet."""
    missing = missing_importers()
    if missing:
        pytest.skip(f"load needs every importer; missing: {', '.join(missing)}")


def check_input(module: ModuleType, data: bytes) -> None:
    """The module's own `parse` on `data`, and `load` once every importer exists."""
    check_parse(module, data)
    if not missing_importers():
        check_load(data)


# the fuzz tests


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", FORMAT_MODULES)
def test_seed_files_load(name: str) -> None:
    """The seeds are valid (but the `invalid/` ones): each loads with its own importer."""
    module = importer(name)
    if not seed_files(name):
        pytest.skip(f"no seed for {name}")
    for label, data in seed_files(name):
        if "/invalid/" in label:
            with pytest.raises(FormatError):
                module.parse(data, "seed")
        else:
            assert module.sniff(data[:65536]), f"{label} not recognised by {name}"
            check_group(module.parse(data, "seed"), label)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", FORMAT_MODULES)
def test_random_bytes(name: str) -> None:
    module = importer(name)

    @FUZZ_SETTINGS
    @given(random_inputs(name))
    def fuzz(data: bytes) -> None:
        check_input(module, data)

    fuzz()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", FORMAT_MODULES)
def test_mutated_valid_files(name: str) -> None:
    module = importer(name)
    if not seeds(name):
        pytest.skip(f"no seed for {name}")

    @FUZZ_SETTINGS
    @given(mutated_inputs(name))
    def fuzz(data: bytes) -> None:
        check_input(module, data)

    fuzz()


HOSTILE_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 1e308, 5e-324]),
)
PSTATS_NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70), HOSTILE_FLOATS, st.none(), st.text(max_size=3)
)
PSTATS_KEYS = st.one_of(
    st.tuples(
        st.sampled_from(["a.py", "~", "", "b.py"]),
        st.integers(-1, 3),
        st.sampled_from(["f", "g", "<module>", "h"]),
    ),
    st.tuples(st.text(max_size=3), st.one_of(st.integers(), st.text(max_size=2)), st.none()),
    st.integers(),
    st.text(max_size=3),
)


@st.composite
def pstats_dicts(draw: st.DrawFn) -> bytes:
    """A marshalled dict shaped like pstats, with hostile numbers, types and caller graphs (cycles too)."""
    keys = draw(st.lists(PSTATS_KEYS, min_size=1, max_size=6, unique_by=repr))
    stats = {}
    for key in keys:
        callers = {
            draw(st.sampled_from(keys)): draw(
                st.one_of(
                    st.tuples(*[PSTATS_NUMBERS] * 4), PSTATS_NUMBERS, st.tuples(PSTATS_NUMBERS)
                )
            )
            for _ in range(draw(st.integers(0, 3)))
        }
        numbers = draw(st.lists(PSTATS_NUMBERS, min_size=0, max_size=5))
        stats[key] = draw(st.sampled_from([(*numbers[:4], callers), tuple(numbers), callers, None]))
    try:
        return marshal.dumps(stats)
    except ValueError:  # a value marshal cannot write
        return marshal.dumps({})


@pytest.mark.timeout(120)
def test_generated_pstats_dicts() -> None:
    """cProfile files are marshalled dicts: feed dicts of every wrong shape, number and type."""
    module = importer("cprofile")

    @FUZZ_SETTINGS
    @given(pstats_dicts())
    def fuzz(data: bytes) -> None:
        check_parse(module, data)

    fuzz()


DEPTH = 100_000


def hostile_inputs() -> list[tuple[str, bytes]]:
    """Inputs every importer must survive: empty, binary, deeply nested, very long lines."""
    return [
        ("empty", b""),
        ("blank lines", b"\n" * 10_000),
        ("NUL bytes", b"\x00" * 10_000),
        ("deep JSON array", b"[" * DEPTH),
        ("deep closed JSON array", b"[" * DEPTH + b"]" * DEPTH),
        ("deep JSON object", b'{"a":' * DEPTH),
        (
            "speedscope then deep",
            b'{"$schema":"https://www.speedscope.app/file-format-schema.json","profiles":'
            + b"[" * DEPTH,
        ),
        ("cpuprofile then deep", b'{"nodes":[{"id":1,"callFrame":' + b"[" * DEPTH),
        (
            "cpuprofile deep samples",
            b'{"nodes":[],"samples":' + b"[" * DEPTH + b"]" * DEPTH + b',"timeDeltas":[]}',
        ),
        (
            "trace then deep",
            b'{"traceEvents":[{"ph":"B","name":"a","ts":0,"pid":1,"tid":1,"args":' + b"[" * DEPTH,
        ),
        ("trace array then deep", b'[{"ph":"X","name":' + b'{"a":' * DEPTH),
        (
            "trace deep closed args",
            b'[{"ph":"X","name":"a","ts":1,"dur":2,"pid":1,"tid":1,"args":'
            + b"[" * DEPTH
            + b"]" * DEPTH
            + b"}]",
        ),
        (
            "NaN literal",
            b'{"nodes":[{"id":1,"callFrame":{"functionName":"a"}}],"samples":[1],"timeDeltas":[NaN]}',
        ),
        ("long collapsed line", b"frame;" * 200_000 + b"f 1\n"),
        ("long collapsed count", b"a;b " + b"9" * 100_000 + b"\n"),
        ("long line without count", b"x" * 2_000_000),
        ("many tiny lines", b"a 1\n" * 200_000),
        (
            "perf header then long frame",
            b"cmd 1/1 1.0: 1 cycles:\n\t1 " + b"f" * 1_000_000 + b" (x)\n\n",
        ),
        ("pprof deep groups", b"\x9b\x06" * DEPTH),
        ("pprof huge length", b"\x0a\xff\xff\xff\xff\x0f\x08\x01"),
        ("marshal deep", b"[\x01\x00\x00\x00" * 3000 + b"N"),
        (
            "marshal dict garbage",
            marshal.dumps({("a", 1, "f"): (1, 1, float("nan"), -1.0, {"x": None})}),
        ),
        ("marshal wrong shape", marshal.dumps({1: 2})),
        ("marshal list", marshal.dumps([1, 2, 3])),
        (
            "cpuprofile id over 64 bits",
            b'{"nodes":[{"id":18446744073709551615,"callFrame":{"functionName":"a","url":"","lineNumber":0,"columnNumber":0}}],"startTime":0,"endTime":1,"samples":[1],"timeDeltas":[1]}',
        ),
        (
            "cpuprofile times overflow",
            b'{"nodes":[{"id":1,"callFrame":{"functionName":"a","url":"","lineNumber":0,"columnNumber":0}}],"startTime":0,"endTime":1,"samples":[1,1,1],"timeDeltas":[1,1e308,1e308]}',
        ),
        ("trace comma only", b"[,"),
        (
            "speedscope list in a sample",
            b'{"$schema":"https://www.speedscope.app/file-format-schema.json","profiles":[{"type":"sampled","name":"p","unit":"none","startValue":0,"endValue":2,"samples":[[[],0],[0]],"weights":[1,1]}],"shared":{"frames":[{"name":"a"}]}}',
        ),
        ("empty first chunk", b'[}\n{"ph":"B","name":"a","ts":0,"pid":1,"tid":1}]'),
        ("utf-16 bom then garbage", b"\xff\xfe" + b"\x00\xd8" * 1000),
    ]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", FORMAT_MODULES)
def test_hostile_inputs(name: str) -> None:
    """Every hostile input straight into the module's parse (whatever its sniff says)."""
    module = importer(name)
    failures = []
    for label, data in hostile_inputs():
        try:
            check_parse(module, data)
        except Exception as error:  # collected so that one run reports every failing input
            failures.append(f"{label}: {type(error).__name__}: {str(error)[:300]}")
    assert not failures, "\n".join(failures)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("label", "data"), hostile_inputs(), ids=[label for label, _ in hostile_inputs()]
)
def test_hostile_inputs_through_load(label: str, data: bytes) -> None:
    """Every hostile input through `load`, which picks the importer by content."""
    require_load()
    check_load(data)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", FORMAT_MODULES)
def test_compressed_mutations(name: str) -> None:
    """Corrupt or truncated gzip/zstd around a valid file: load gives a group or a FormatError."""
    importer(name)
    require_load()
    if not seeds(name):
        pytest.skip(f"no seed for {name}")

    @FUZZ_SETTINGS
    @given(st.sampled_from(seeds(name)), st.sampled_from(["gzip", "zstd"]), st.data())
    def fuzz(seed: bytes, layer: str, data: st.DataObject) -> None:
        packed = bytearray(gzip.compress(seed) if layer == "gzip" else zstandard.compress(seed))
        mutation = data.draw(st.sampled_from(MUTATIONS[:5]), label="mutation")
        packed = mutation(data.draw, packed)
        with limits_in_force(**FUZZ_LIMITS):
            loaded = call_bounded(lambda: load(bytes(packed)), "load")
        if not isinstance(loaded, FormatError):
            check_group(loaded, "load")

    fuzz()


# the loader: decompression and caps


def collapsed_text(lines: int) -> bytes:
    """A collapsed-stacks file with `lines` distinct stacks."""
    return b"".join(b"main;work;leaf%d %d\n" % (i, i % 7 + 1) for i in range(lines))


def test_gzip_and_zstd_layers_are_undone() -> None:
    require_load()
    data = seeds("chrome_trace")[-1]
    plain = load(data)
    for packed in (
        gzip.compress(data),
        zstandard.compress(data),
        gzip.compress(zstandard.compress(data)),
        gzip.compress(data) + gzip.compress(b""),
    ):
        group = load(packed)
        assert group.format == plain.format
        assert [p.name for p in group.profiles] == [p.name for p in plain.profiles]
        assert [p.total_weight for p in group.profiles] == [p.total_weight for p in plain.profiles]


def test_gzip_output_longer_than_one_inflate_call_is_whole() -> None:
    """Output inflated over several calls (a multiple of the call's size, or not;
    one member or two) comes out whole."""
    require_load()
    line = b"a;bcd 1\n"  # 8 bytes: 3 x 4 MiB is exactly 3 calls
    for repeats in (3 * (4 << 20) // len(line), 3 * (4 << 20) // len(line) + 1):
        text = line * repeats
        for packed in (gzip.compress(text, 1), gzip.compress(text, 1) + gzip.compress(line, 1)):
            lines = repeats + (len(packed) > len(gzip.compress(text, 1)))
            assert load(packed).profiles[0].total_weight == lines


def gzip_bomb(size: int) -> bytes:
    """A gzip stream of `size` zero bytes, built without holding them in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    parts.append(packer.flush())
    return b"".join(parts)


@pytest.mark.timeout(60)
def test_gzip_bomb_over_the_cap_is_refused() -> None:
    bomb = gzip_bomb(256 << 20)
    assert len(bomb) < 1 << 20
    with limits_in_force(max_decompressed_bytes=1 << 20), pytest.raises(FormatError) as caught:
        load(bomb)
    assert caught.value.format_title == "gzip"
    assert "decompresses to more than 1,048,576 bytes" in str(caught.value)


@pytest.mark.timeout(60)
def test_zstd_bomb_over_the_cap_is_refused() -> None:
    bomb = zstandard.ZstdCompressor(level=3).compress(bytes(64 << 20))
    with limits_in_force(max_decompressed_bytes=1 << 20), pytest.raises(FormatError) as caught:
        load(bomb)
    assert caught.value.format_title == "zstd"
    assert "decompresses to more than 1,048,576 bytes" in str(caught.value)


def test_input_over_the_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    data = b"main;work 1\n" * 1000
    with (
        limits_in_force(max_decompressed_bytes=100),
        pytest.raises(FormatError, match="more than 100 bytes"),
    ):
        load(data)
    path = tmp_path / "big.txt"
    path.write_bytes(data)
    with (
        limits_in_force(max_decompressed_bytes=100),
        pytest.raises(FormatError, match="more than 100 bytes"),
    ):
        load(path)


def test_corrupt_and_truncated_compression_is_a_format_error() -> None:
    packed = gzip.compress(b"main;work 1\n" * 100)
    with pytest.raises(FormatError, match="gzip"):
        load(packed[: len(packed) // 2])
    with pytest.raises(FormatError, match="gzip"):
        load(packed[:10] + bytes(len(packed) - 10))
    with pytest.raises(FormatError, match="zstd"):
        load(zstandard.compress(b"main;work 1\n" * 100)[:-8] + b"\x00" * 8)


def test_unrecognised_content_names_the_formats() -> None:
    require_load()
    with pytest.raises(FormatError, match="not a profile flamesight can read"):
        load(b"\x00\x01\x02 definitely not a profile \x03")


def sample_cap_inputs() -> dict[str, bytes]:
    """Per importer, a valid input with 100 samples (or more) and 100 distinct frames."""
    count = 100
    nodes = [
        {
            "id": 1,
            "callFrame": {
                "functionName": "(root)",
                "url": "",
                "lineNumber": -1,
                "columnNumber": -1,
            },
            "children": list(range(2, count + 2)),
        }
    ]
    nodes += [
        {
            "id": i,
            "callFrame": {
                "functionName": f"f{i}",
                "url": "a.js",
                "lineNumber": i,
                "columnNumber": 0,
            },
        }
        for i in range(2, count + 2)
    ]
    events = []
    for i in range(count):
        events.append({"ph": "B", "name": f"f{i}", "ts": 2 * i, "pid": 1, "tid": 1})
        events.append({"ph": "E", "name": f"f{i}", "ts": 2 * i + 1, "pid": 1, "tid": 1})
    return {
        "speedscope": orjson.dumps(
            {
                "$schema": "https://www.speedscope.app/file-format-schema.json",
                "shared": {"frames": [{"name": f"f{i}"} for i in range(count)]},
                "profiles": [
                    {
                        "type": "sampled",
                        "name": "p",
                        "unit": "none",
                        "startValue": 0,
                        "endValue": count,
                        "samples": [[i] for i in range(count)],
                        "weights": [1] * count,
                    }
                ],
            }
        ),
        "chrome_cpuprofile": orjson.dumps(
            {
                "nodes": nodes,
                "startTime": 0,
                "endTime": 100 * count,
                "samples": list(range(2, count + 2)),
                "timeDeltas": [100] * count,
            }
        ),
        "chrome_trace": orjson.dumps(events),
        "perf_script": b"".join(
            b"prog 1/1 %d.%06d: 1000 cpu-clock:\n\t%x f%d (/bin/prog)\n\n" % (10, i, 0x1000 + i, i)
            for i in range(count)
        ),
        "collapsed": collapsed_text(count),
        "cprofile": pstats_bytes(
            {
                ("a.py", i, f"f{i}"): (
                    1,
                    1,
                    0.001,
                    0.001,
                    {("a.py", 0, "main"): (1, 1, 0.001, 0.001)},
                )
                for i in range(1, count + 1)
            }
            | {("a.py", 0, "main"): (1, 1, 0.0, 0.1, {})}
        ),
    }


@pytest.mark.parametrize("name", FORMAT_MODULES)
def test_sample_and_frame_caps_become_format_errors(name: str) -> None:
    module = importer(name)
    require_load()
    data = sample_cap_inputs().get(name) or next(iter(seeds(name)), None)
    if data is None:
        pytest.skip(f"no input for {name}")
    group = load(data)
    samples = max(len(p.samples) for p in group.profiles)
    frames = max(len(p.frames) for p in group.profiles)
    assert samples >= 2 and frames >= 2, "the cap input is too small to cross a cap"
    with limits_in_force(max_samples=samples - 1), pytest.raises(FormatError) as caught:
        load(data)
    assert caught.value.format_title == module.TITLE
    assert f"more than {samples - 1:,} samples" in str(caught.value)
    with limits_in_force(max_frames=frames - 1), pytest.raises(FormatError) as caught:
        load(data)
    assert f"more than {frames - 1:,} distinct frames" in str(caught.value)

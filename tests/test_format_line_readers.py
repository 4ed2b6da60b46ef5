"""The line readers of V8 ``--prof`` logs, Austin and pmcstat callgraphs.

Each reads lines as bytes and remembers what it worked out from repeated
lines (V8 ticks and Austin stacks), or makes the stack table with NumPy
(pmcstat). These tests check that the result is exactly the profile the
plain reading gives: the same frames, stacks, sample times and weights, in
the same order, and that errors still name their line.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from flamesight.formats import FormatError, austin, pmcstat, v8_prof
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit


def columns(group: ProfileGroup) -> list[tuple]:
    """Everything a profile holds, as plain lists, for exact comparison."""
    return [
        (
            profile.name,
            profile.unit,
            [profile.frames[i] for i in range(len(profile.frames))],
            profile.stacks.parent.tolist(),
            profile.stacks.frame.tolist(),
            profile.samples.stack.tolist(),
            profile.samples.time.tolist(),
            profile.samples.weight.tolist(),
            profile.metadata,
        )
        for profile in group.profiles
    ]


def stack_names(profile: Profile) -> list[str]:
    """Each sample's stack as "root;...;leaf"."""
    return [
        ";".join(profile.frames.name[f] for f in profile.stacks.frames_of(int(stack)))
        for stack in profile.samples.stack
    ]


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Count the calls of `owner.name` (which still runs) in a one-item list."""
    calls = [0]
    original = getattr(owner, name)

    def counted(*args: object) -> object:
        calls[0] += 1
        return original(*args)

    monkeypatch.setattr(owner, name, counted)
    return calls


# V8 --prof log

V8_HEAD = b"""v8-version,11,3,244,8,0,0
shared-library,/usr/bin/node,0x400000,0x800000,0
code-creation,Builtin,2,50,0x1000,256,InterpreterEntryTrampoline
code-creation,JS,10,100,0x10000000,64,main /app.js:1:1,0x20000000,~
code-creation,JS,10,120,0x10000100,64,leaf /app.js:9:5,0x20000040,~
"""
V8_TICKS = [
    b"tick,0x10000110,%d,0,0x0,0,0x10000010",
    b"tick,0x10000110,%d,0,0x0,0,0x400100,0x10000010",
    b"tick,0x1010,%d,1,0x10000104,0,+10,-1000,overflow",
]


def v8_log(times: list[int], quoted: bool = False) -> bytes:
    """Ticks cycling through `V8_TICKS`; `quoted` quotes each program counter (same value)."""
    lines = []
    for index, time in enumerate(times):
        event, pc, rest = (V8_TICKS[index % len(V8_TICKS)] % time).split(b",", 2)
        lines.append(b'%s,"%s",%s' % (event, pc, rest) if quoted else b",".join((event, pc, rest)))
    return V8_HEAD + b"\n".join(lines) + b"\n"


def test_v8_repeated_ticks_give_the_profile_of_the_plain_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ticks that differ only in time are resolved once; quoted ones (never remembered) each time."""
    times = [500 + 7 * i for i in range(30)]
    calls = count_calls(monkeypatch, v8_prof, "_tick")
    plain = v8_prof.parse(v8_log(times, quoted=True), "isolate.log")
    assert calls[0] == len(times)
    fast = v8_prof.parse(v8_log(times), "isolate.log")
    assert calls[0] == len(times) + len(V8_TICKS)
    assert columns(fast) == columns(plain)
    assert stack_names(fast.profiles[0])[:3] == [
        "main;leaf",
        "main;(LIB) /usr/bin/node;leaf",
        "leaf;leaf",  # the callback's pc and +10 (-1000 from there is no code)
    ]
    assert fast.profiles[0].samples.weight.tolist()[:2] == [500.0, 7.0]


def test_v8_remembered_ticks_are_forgotten_when_the_code_map_changes() -> None:
    """The same tick line after a code-move resolves against the moved code."""
    tick = b"tick,0x10001010,%d,0,0x0,0,0x10000010"
    log = (
        V8_HEAD
        + tick % 500
        + b"\ncode-move,0x10000100,0x10001000\n"
        + tick % 700
        + b"\n"
        + tick % 900
        + b"\n"
    )
    (profile,) = v8_prof.parse(log, "isolate.log").profiles
    assert stack_names(profile) == ["main", "main;leaf", "main;leaf"]


@pytest.mark.parametrize(
    ("time", "weight"),
    [
        ("\u0661\u0662".encode(), 12.0),  # not ASCII: read the plain way
        (b" 12 ", 12.0),
        (b"1_2", 12.0),
    ],
)
def test_v8_times_of_remembered_ticks_read_as_before(time: bytes, weight: float) -> None:
    """The time of a remembered tick is read as `int` reads the decoded text."""
    tick = b"tick,0x10000110,%s,0,0x0,0,0x10000010\n"
    (profile,) = v8_prof.parse(V8_HEAD + tick % b"5" + tick % time, "isolate.log").profiles
    assert profile.samples.weight.tolist() == [5.0, weight - 5]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            [b"tick,0x10000110,500,0,0x0,0,0x10000010", b"tick,0x10000110,5x,0,0x0,0,0x10000010"],
            "V8 --prof log, line 7: expected a number as time, got '5x'",
        ),
        (
            [b"tick,0x10000110,500,0,0x0,0", b"tick,0x10000110,600,0,0x0,0", b"tick,0x10000110"],
            "V8 --prof log, line 8: a tick with 1 fields: 'tick,0x10000110'",
        ),
        (
            [b"tick,0x10000110,500,0,0x0,0", b"tick,0x10000110," + b"1" * 21 + b",0,0x0,0"],
            "V8 --prof log, line 7: expected a number as time, got '" + "1" * 21 + "'",
        ),
    ],
)
def test_v8_errors_in_repeated_ticks_name_the_line(lines: list[bytes], message: str) -> None:
    """A bad time in a tick line seen before is reported as on any other line."""
    with pytest.raises(FormatError) as caught:
        v8_prof.parse(V8_HEAD + b"\n".join(lines) + b"\n", "isolate.log")
    assert str(caught.value) == message


def test_v8_crlf_blank_lines_and_no_final_newline() -> None:
    """CRLF line ends, blank lines and a last line without a newline read as plain LF lines."""
    log = v8_log([500, 600, 700, 800, 900])
    crlf = log.replace(b"\n", b"\r\n").replace(b"tick,0x1010,", b"\r\ntick,0x1010,")
    expected = columns(v8_prof.parse(log, "isolate.log"))
    assert columns(v8_prof.parse(crlf, "isolate.log")) == expected
    assert columns(v8_prof.parse(log.removesuffix(b"\n"), "isolate.log")) == expected


# V8 --preprocess JSON

V8_CODE = [
    {"name": "/usr/bin/node", "type": "SHARED_LIB"},
    {"name": "T node::Start(int, char**)", "type": "CPP"},
    {"name": "main /app.js:1:1", "type": "JS", "kind": "Opt"},
    {"name": "leaf /app.js:9:5", "type": "JS", "kind": "Unopt"},
    {"name": "InterpreterEntryTrampoline", "type": "CODE", "kind": "Builtin"},
]


def v8_json(count: int, extra: bytes = b"") -> bytes:
    """A preprocessed profile of `count` ticks, one per line as node writes them."""
    ticks = [
        b'{"tm":%d,"vm":0,"s":[%s]}'
        % (100 + 10 * i, b",".join(b"%d,%d" % (c, i % 7) for c in [3, 2, 4, -1, 0][i % 5 :]))
        for i in range(count)
    ]
    code = json.dumps(V8_CODE).encode()
    return b'{\n  "code": %s,%s\n  "ticks": [\n%s\n  ]\n}\n' % (code, extra, b",\n".join(ticks))


def v8_json_read_whole(monkeypatch: pytest.MonkeyPatch, data: bytes) -> ProfileGroup:
    """The profile of the plain reading (the whole document at once)."""
    with monkeypatch.context() as patch:
        patch.setattr(v8_prof, "_read_json_in_pieces", lambda data: None)
        return v8_prof.parse(data, "p.v8log.json")


@pytest.mark.parametrize("count", [1, 2, 3000, 3001, 9000])
def test_v8_json_ticks_read_in_pieces_give_the_profile_of_the_whole_reading(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    """The ticks are read a piece at a time (several pieces for thousands) with the same result."""
    data = v8_json(count)
    assert v8_prof._read_json_in_pieces(data) is not None
    assert columns(v8_prof.parse(data, "p.v8log.json")) == columns(
        v8_json_read_whole(monkeypatch, data)
    )


def test_v8_json_ticks_elsewhere_are_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A "ticks" list inside another object first: the pieces are not used."""
    data = v8_json(3000, b'\n  "meta": {"ticks": [{"tm": 1, "s": [2, 0]}]},')
    assert v8_prof._read_json_in_pieces(data) is None
    (profile,) = v8_prof.parse(data, "p.v8log.json").profiles
    assert len(profile.samples) == 3000
    assert columns(v8_prof.parse(data, "p.v8log.json")) == columns(
        v8_json_read_whole(monkeypatch, data)
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b'{"tm":29090,', b'{"tm":"29090",', "$.ticks[2899].tm: expected a time, got the string"),
        (
            b'{"tm":88880,"vm":0,"s":[-1,2,0,2]}',
            b'{"tm":88880,"vm":0,"s":[-1,2,true,2]}',
            "$.ticks[8878].s[2]: expected a code index, got true",
        ),
        (b'{"tm":100,', b"[", "not valid JSON"),
    ],
)
def test_v8_json_errors_in_late_pieces_name_the_tick(old: bytes, new: bytes, message: str) -> None:
    """A bad tick makes the whole document be read, which names it as before."""
    data = v8_json(9000)
    assert data.count(old) == 1
    with pytest.raises(FormatError, match=re.escape(message)):
        v8_prof.parse(data.replace(old, new), "p.v8log.json")


# Austin

AUSTIN_STACKS = [
    b"P1;T0:7f00;/app/main.py:<module>:1;/app/main.py:work:12",
    b"P1;T0:7f01;/app/main.py:<module>:1;/app/io.py:read:3",
    b"P1;T0:7f00;/app/main.py:<module>:1;/app/main.py:work:12;/app/main.py:inner:20",
]


def austin_file(metrics: list[str]) -> bytes:
    """Samples cycling through `AUSTIN_STACKS` with these metrics, between a header and a footer."""
    lines = [b"# austin: 3.6.0", b"# mode: wall", b""]
    lines += [
        AUSTIN_STACKS[i % len(AUSTIN_STACKS)] + b" " + metric.encode("utf-8")
        for i, metric in enumerate(metrics)
    ]
    return b"\n".join([*lines, b"", b"# duration: 100"])


ARABIC_INDIC = str.maketrans(
    "0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
)


def test_austin_repeated_stacks_give_the_profile_of_the_plain_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stack text seen before only adds its weight; metrics in other digits go the plain way."""
    metrics = [str(10 + 3 * i) for i in range(20)]
    calls = count_calls(monkeypatch, austin._Reader, "line")
    plain = austin.parse(austin_file([m.translate(ARABIC_INDIC) for m in metrics]), "a.austin")
    assert calls[0] == 3 + len(metrics) + 2  # header, samples, footer
    fast = austin.parse(austin_file(metrics), "a.austin")
    assert calls[0] == 2 * (3 + 2) + len(metrics) + len(AUSTIN_STACKS)  # one per stack
    assert columns(fast) == columns(plain)
    assert [p.name for p in fast.profiles] == ["process 1 thread 0:7f00", "process 1 thread 0:7f01"]
    assert fast.profiles[0].metadata == {"austin": "3.6.0", "mode": "wall", "duration": "100"}


def test_austin_lines_are_split_as_str_splitlines_splits_them() -> None:
    """\\r, \\x0b, \\x1c, U+0085 and U+2028 end lines, as in the decoded text; numbers count them."""
    stack = b"P1;T1;a.py:f:1"
    text = b"\n".join(
        [
            stack + b" 5",
            stack + b" 5\r" + stack + b" 6",
            stack + b" 7\x0b" + stack + b" 8\x1c",
            stack + b" 9\xc2\x85" + stack + b" 10\xe2\x80\xa8",
            stack + b" 11\r\n" + stack + b" 12\r",
            stack + b" 13\x0bnot a sample",
        ]
    )
    with pytest.raises(FormatError) as caught:
        austin.parse(text, "a.austin")
    number = text.decode().splitlines().index("not a sample") + 1
    assert number == 13
    assert str(caught.value).startswith(f"Austin, line {number}: expected 'P<pid>;T<thread>;")
    (profile,) = austin.parse(text.removesuffix(b"\x0bnot a sample"), "a.austin").profiles
    assert profile.samples.weight.tolist() == [5.0, *map(float, range(5, 14))]


def test_austin_stack_texts_are_only_remembered_when_the_bytes_agree() -> None:
    """Trailing white space, negative and other-digit metrics keep their plain meaning."""
    text = b"\n".join(
        [
            b"# mode: memory",
            b"P1;T1;a.py:f:1 -3",  # freed memory: left out, no stack made
            b"P1;T1;b.py:g:2 4",
            b"P1;T1;a.py:f:1 5 ",  # trailing space: frames [a.py:f:1], weight 5
            b"P1;T1;a.py:f:1 5 7",  # frames [a.py:f:1 5], weight 7
            b"P1;T1;a.py:f:1 -0",  # -0 is not negative
            b" P1;T1;a.py:f:1 9",
            "P1;T1;b.py:g:2 \u0667".encode(),
            b"P1;T1;a.py:f:1 1,0,-5",
            b"P1;T1;a.py:f:1 2,0,-5",
        ]
    )
    (profile,) = austin.parse(text, "a.austin").profiles
    assert profile.unit is Unit.BYTES
    assert stack_names(profile) == [
        "g",
        "f",
        "a.py:f:1 5",
        "f",
        "f",
        "g",
        "f",
        "f",
    ]
    assert profile.samples.weight.tolist() == [4, 5, 7, 0, 9, 7, 1, 2]
    assert profile.frames.name[:2].tolist() == ["g", "f"]


def test_austin_errors_name_the_line() -> None:
    """A bad line after remembered ones is reported with its line number."""
    text = austin_file(["1", "2", "3", "4"]) + b"\nP1;T1;a.py:f:1\n"
    with pytest.raises(FormatError) as caught:
        austin.parse(text, "a.austin")
    assert str(caught.value) == (
        "Austin, line 10: expected 'P<pid>;T<thread>;file:function:line;... <metric>', "
        "got 'P1;T1;a.py:f:1'"
    )


# pmcstat


def pmcstat_reference(chains: list[tuple[list[str], int]]) -> ProfileGroup:
    """What `ProfileBuilder` makes of chains (sampled function first), one chain at a time.

    Frames are made in the order the chains name them (the file's order below).
    """
    builder = ProfileBuilder("callgraph.txt", Unit.NONE)
    for functions, count in chains:
        frames = [builder.frame(name, f"/lib/{name[0]}.so") for name in functions]
        builder.add_sample(builder.stack_of(reversed(frames)), float(count))
    return ProfileGroup("callgraph.txt", [builder.build()])


PMCSTAT = b"""@ inst_retired.any [60 samples]

50.00%  [30]   alpha @ /lib/a.so
 60.00%  [18]    beta @ /lib/b.so
  100.0%  [18]     main @ /lib/m.so
 40.00%  [12]    main
this line is not an entry
30.00%  [20]   beta @ /lib/b.so
 100.0%  [20]    alpha @ /lib/a.so
  50.0%  [10]     beta @ /lib/b.so
   100.0%  [10]      main @ /lib/m.so
  50.0%  [10]     main
20.00%  [10]   main @ /lib/m.so
"""


def test_pmcstat_stack_table_is_the_one_the_builder_makes() -> None:
    """Same frames, stacks (numbered as the builder numbers them), times and weights."""
    group = pmcstat.parse(PMCSTAT, "callgraph.txt")
    expected = pmcstat_reference(
        [
            (["alpha", "beta", "main"], 18),
            (["alpha", "main"], 12),
            (["beta", "alpha", "beta", "main"], 10),
            (["beta", "alpha", "main"], 10),
            (["main"], 10),
        ]
    )
    assert columns(group) == columns(expected)
    (profile,) = group.profiles
    assert profile.stacks.parent.dtype == np.int32
    assert profile.samples.time.tolist() == [0, 18, 30, 40, 50]


def test_pmcstat_crlf_reads_as_lf() -> None:
    """CRLF line ends give the same profile."""
    crlf = PMCSTAT.replace(b"\n", b"\r\n")
    assert columns(pmcstat.parse(crlf, "x")) == columns(pmcstat.parse(PMCSTAT, "x"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            PMCSTAT + b"   1.0%  [1]  deep\n",
            "pmcstat callgraph, line 14: indented 3 spaces, more than one level below the line before",
        ),
        (
            PMCSTAT.replace(b"[10]      main", b"[" + b"9" * 16 + b"]      main"),
            "pmcstat callgraph, line 11: sample count 9999999999999999... is too large",
        ),
        (
            b"@ cycles [1 samples]\n\n 1.0%  [1]  first\n",
            "pmcstat callgraph, line 3: indented 1 spaces, more than one level below the line before",
        ),
    ],
)
def test_pmcstat_errors_name_the_line(text: bytes, message: str) -> None:
    """Bad indents and counts are reported on their line."""
    with pytest.raises(FormatError) as caught:
        pmcstat.parse(text, "x")
    assert str(caught.value) == message

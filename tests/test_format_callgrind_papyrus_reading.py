"""The column readings of callgrind files and Papyrus logs against their line-by-line readings.

Both importers read most files with NumPy (callgrind: a block of lines at a
time, its cost lines as columns; Papyrus: the lines as columns, replayed in
the order the replay takes them) and fall back to reading line by line for
anything unusual. These tests check that the fast reading is taken where it
should be, that it gives exactly the profile of the line-by-line reading
(frames, stacks, sample stacks, times and weights), also with blocks cut at
every line, and that errors still name their line.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from flamesight.formats import FormatError, callgrind, papyrus
from flamesight.model import ProfileGroup, ProfileTooLarge
from flamesight.model.limits import limits_in_force
from tests.conftest import CONFORMANCE


def table(group: ProfileGroup) -> list[tuple]:
    """Everything a profile holds, as plain values."""
    return [
        (
            p.name,
            p.unit,
            p.sampled,
            [p.frames[index] for index in range(len(p.frames))],
            *(column.tolist() for column in (p.stacks.parent, p.stacks.frame)),
            *(column.tolist() for column in (p.samples.stack, p.samples.time, p.samples.weight)),
        )
        for p in group.profiles
    ]


def line_by_line(monkeypatch: pytest.MonkeyPatch, module, fast_reading: str):
    """`module.parse` with its fast reading (`fast_reading`) turned off."""

    def unusual(*args: object) -> None:
        raise module._Unusual

    def parse(data: bytes, name: str) -> ProfileGroup:
        with monkeypatch.context() as patch:
            patch.setattr(module, fast_reading, unusual)
            return module.parse(data, name)

    return parse


def inputs(folder: str, sample: bytes) -> list[bytes]:
    """`sample` and the conformance files of a format."""
    return [sample] + [
        path.read_bytes() for path in sorted((CONFORMANCE / "profiles" / folder).glob("*"))
    ]


def outcome(parse, data: bytes) -> list[tuple] | str:
    """The profile `parse` reads, or its error message."""
    try:
        return table(parse(data, "x"))
    except FormatError as error:
        return str(error)


def mutations(seeds: list[bytes], alphabet: bytes, count: int, seed: int) -> list[bytes]:
    """`count` copies of the seeds with a few bytes changed, inserted or deleted."""
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            choice = rng.random()
            if choice < 0.4 and data:
                data[min(at, len(data) - 1)] = rng.choice(alphabet)
            elif choice < 0.75:
                data[at:at] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
            else:
                del data[at : at + rng.randint(1, 4)]
        result.append(bytes(data))
    return result


# callgrind


CALLGRIND = b"""\xef\xbb\xbf# callgrind format
version: 1
positions: instr line
events: Ir Dr Dw

fl=(1) /src/main.c
fn=(1) main
0x401000 12 100 4 2
+3 * 7
+0x2 +1 5 1\t
-1 -2 +3 -1 *
* * * * *
cfi=(2) /src/work.c
cfn=(2) work
calls=3 0x402000 40
+4 * 900 30 9
+1 +1 8
fi=(3) /src/inline.h
+2 3 0x10
fe=(1)
# a comment
jump=2 +3 0
ob=(1) /bin/app
cfn=(3) leaf
calls=1 0x403000 7
* * 50
fl=(2)
fn=(2)
0x402000 40 600 20 5
cfn=(2)
calls=2 0x402000 40
* * 300 10 3
fn=(3) leaf
0x403000 7 50
totals: 1000 40 12
""".replace(b"\n", b"\r\n")


@pytest.mark.parametrize("index", range(6))
def test_callgrind_blocks_read_what_lines_read(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = inputs("callgrind", CALLGRIND)[index]
    callgrind._read_in_blocks(data)  # taken: no `_Unusual`
    expected = outcome(line_by_line(monkeypatch, callgrind, "_read_in_blocks"), data)
    assert isinstance(expected, list) and expected[0][6]  # some samples
    for block_bytes in (1, 2, 7, 64, 1 << 20):
        monkeypatch.setattr(callgrind, "_BLOCK_BYTES", block_bytes)
        assert outcome(callgrind.parse, data) == expected


def test_callgrind_reads_a_large_generated_file_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    lines = [b"# callgrind format", b"positions: line", b"events: Ir Dr"]
    for function in range(1, 60):
        lines += [b"fl=(%d) f%d.c" % (function % 7, function % 7) if function < 8 else b"fl=(3)"]
        lines += [b"fn=(%d) fn%d" % (function, function)]
        lines += [b"%d %d %d" % (function, rng.randint(0, 90), rng.randint(0, 9))]
        for _ in range(rng.randint(20, 200)):
            step = rng.choice([b"+%d" % rng.randint(0, 9), b"-%d" % rng.randint(0, 3), b"*"])
            lines.append(step + b" %d" % rng.randint(0, 999) + rng.choice([b"", b" 4", b" *"]))
            if rng.random() < 0.05 and function > 1:
                lines += [b"cfn=(%d)" % rng.randint(1, function - 1), b"calls=1 5", b"* 400 2"]
    data = b"\n".join(lines) + b"\n"
    expected = outcome(line_by_line(monkeypatch, callgrind, "_read_in_blocks"), data)
    monkeypatch.setattr(callgrind, "_BLOCK_BYTES", 4096)
    callgrind._read_in_blocks(data)
    assert outcome(callgrind.parse, data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"events: Ir\nfn=a\n1 \xd9\xa3\n",  # an Arabic-Indic digit: a cost line only as text
        b"events: Ir\nfn=a\n1\x0b5\n",  # a vertical tab between the numbers
        b"events: Ir\nfn=a\n 1 5\n",  # a blank before the first number
        b"events: Ir\nfn=a\n1 1234567890123456789012\n",  # past int64
        b"events: Ir\nfn=a\n1 5\npositions: instr line\n0x1 2 3\n",  # positions changed
        b"events: Ir\nfn=a\n1 4000000000000000\n2 4000000000000000\n",  # past exact float sums
        b"events: Ir\nfn=a\ncfn=b\ncalls=1 2\n 2 5\n",  # the call's cost line written unusually
    ],
)
def test_callgrind_unusual_files_are_read_line_by_line(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(callgrind._Unusual):
        callgrind._read_in_blocks(data)
    expected = outcome(line_by_line(monkeypatch, callgrind, "_read_in_blocks"), data)
    assert isinstance(expected, list)
    assert outcome(callgrind.parse, data) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"events: Ir\nfn=a\n" + b"1 5\n" * 300 + b"fn=(2)\n", r"line 303: name id \(2\) used"),
        (
            b"fn=a\n" + b"# x\n" * 300 + b"1 5\n",
            "line 302: a cost line before the 'events:' header",
        ),
        (
            b"events: Ir\nfn=a\n" + b"+1 5\n" * 300 + b"cfn=b\ncalls=1 2\nfn=c\n",
            "line 305: expected the cost line of the call, got 'fn=c'",
        ),
        (b"events: Ir\nfn=a\n" + b"1 5\n" * 300 + b"1 " + b"7" * 30 + b"\n", "line 303: number"),
        (b"events: Ir\nfn=a\n" + b"1 5\n" * 300 + b"1 x\n", "line 303: expected 'key: value'"),
    ],
)
def test_callgrind_errors_name_the_line_across_blocks(
    data: bytes, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for block_bytes in (16, 1 << 20):
        monkeypatch.setattr(callgrind, "_BLOCK_BYTES", block_bytes)
        with pytest.raises(FormatError, match=f"^callgrind, {message}"):
            callgrind.parse(data, "x")


# Papyrus


PAPYRUS = b"""Script_x log opened (PC)
100:PUSH:7:1:None:q..outer
150:PUSH:7:2:Form (0001A27A):q..inner
150:PUSH:9:1:None:q..other
150:POP:7:2:Form (0001A27A):q..inner
150:QUEUE_PUSH:9:2:None:q..queued
160:PUSH:9:2:None:q..rec
160:PUSH:9:3:None:q..mid
160:PUSH:9:4:None:q..rec
160:POP:9:4:None:q..rec
170:POP:9:3:None:q..mid
180:POP:9:2:None:q..rec
400:POP:7:1:None:q..outer
500:PUSH:9:1:None:q..late:extra:fields
500:PUSH:11:1:None:QUEUE q
600:POP:11:1:None:QUEUE q

600:POP:9:1:None:q..late
Log closed
""".replace(b"\n", b"\r\n")


@pytest.mark.parametrize("index", range(3))
def test_papyrus_columns_read_what_lines_read(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = inputs("papyrus", PAPYRUS)[index]
    expected = outcome(line_by_line(monkeypatch, papyrus, "_log_columns"), data)
    assert isinstance(expected, list) and expected[0][6]
    if b":START:" not in data:  # a line of three fields is left to the line-by-line reading
        papyrus._log_columns(data)
    for block_bytes, lines_at_once in ((1, 1), (40, 2), (200, 5), (4 << 20, 1 << 16)):
        monkeypatch.setattr(papyrus, "_BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(papyrus, "_LINES_AT_ONCE", lines_at_once)
        assert outcome(papyrus.parse, data) == expected


def test_papyrus_pop_at_a_push_time_is_taken_first_even_out_of_nesting() -> None:
    data = (
        b"10:PUSH:1:1:f:a\n10:PUSH:1:2:f:b\n10:PUSH:1:3:f:a\n10:POP:1:3:f:a\n"
        b"12:POP:1:2:f:b\n15:POP:1:1:f:a\n"
    )
    papyrus._log_columns(data)
    profile = papyrus.parse(data, "x").profiles[0]
    samples = [
        (
            [profile.frames[f].name for f in profile.stacks.frames_of(int(stack))],
            float(time),
            float(weight),
        )
        for stack, time, weight in zip(
            profile.samples.stack, profile.samples.time, profile.samples.weight, strict=True
        )
    ]
    # The first PUSH of "a" takes the POP of "a" at its time (the inner call's), so "b"
    # and the second "a" open on STACK 1 alone; the POP of "b" at 12, with "a" innermost
    # and nothing after time 0 yet, enters "b" again at 0 and leaves it.
    assert samples == [(["STACK 1", "b", "a", "b"], 0.0, 2.0), (["STACK 1", "b", "a"], 2.0, 3.0)]


def test_papyrus_large_numbers_and_blocks_of_both_widths_read_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Times and stack numbers past int32 in some blocks only: the columns are widened."""
    rng = random.Random(5)
    lines, time = [b"Script_x log opened (PC)"], 2**31 - 40
    for _ in range(200):
        time += rng.randrange(3)
        stack = rng.choice([7, 3_000_000_000])
        event = rng.choice([b"PUSH", b"POP", b"POP", b"QUEUE_PUSH"])
        lines.append(b"%d:%s:%d:1:None:s..f%d" % (time, event, stack, rng.randrange(4)))
    data = b"\n".join(lines) + b"\nLog closed\n"
    expected = outcome(line_by_line(monkeypatch, papyrus, "_log_columns"), data)
    monkeypatch.setattr(papyrus, "_BLOCK_BYTES", 300)
    columns = papyrus._log_columns(data)
    assert {columns.times.dtype, columns.stacks.dtype} == {np.dtype(np.int64)}
    assert columns.order.dtype == np.int32
    assert outcome(papyrus.parse, data) == expected
    assert isinstance(expected, list) and len(expected[0][6]) > 50


def test_papyrus_logs_that_may_cross_a_cap_are_read_line_by_line() -> None:
    """The column reading lets go of the text, so it is not taken for a log whose replay might
    cross a cap; the line-by-line reading reports the cap crossed."""
    data = b"".join(
        b"%d:PUSH:7:1:None:f\n%d:POP:7:1:None:f\n" % (t, t + 1) for t in range(0, 40, 2)
    )
    with limits_in_force(max_samples=len(data.splitlines())):
        papyrus._log_columns(data)
        whole = table(papyrus.parse(data, "x"))
    assert whole == table(papyrus.parse(data, "x"))
    with limits_in_force(max_samples=30), pytest.raises(papyrus._Unusual):
        papyrus._log_columns(data)
    with limits_in_force(max_samples=30), pytest.raises(ProfileTooLarge, match="more than 30"):
        papyrus.parse(data, "x")
    with limits_in_force(max_frames=20), pytest.raises(papyrus._Unusual):
        papyrus._log_columns(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"1:PUSH:7:1:None:f\n" * 300 + b"x1:POP:7:1:None:f\n",
            "line 301: expected a time, got 'x1'",
        ),
        (
            b"1:PUSH:7:1\n" + b"1:PUSH:7:1:None:f\n" * 300 + b"2:POP:x:1:None:f\n",
            "line 302: expected a stack number, got 'x'",
        ),
        (
            b"1:PUSH:7:1\n" + b"1:PUSH:7:1:None:f\n" * 300,
            "line 1: a PUSH line needs six fields",
        ),
        (b"log opened\n\nLog closed\n", "whole file: no event lines"),
        (
            b"1:PUSH:7:1:None:f\n" * 300 + b"just text\n",
            "line 301: expected 'TIME:EVENT:STACK:...'",
        ),
    ],
)
def test_papyrus_errors_name_the_line(
    data: bytes, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(papyrus, "_LINES_AT_ONCE", 7)
    with pytest.raises(FormatError, match=f"^Papyrus profiling log, {message}"):
        papyrus.parse(data, "x")


@pytest.mark.parametrize("module", [callgrind, papyrus])
def test_changed_files_read_alike(module, monkeypatch: pytest.MonkeyPatch) -> None:
    if module is callgrind:
        fast_reading, seeds = "_read_in_blocks", inputs("callgrind", CALLGRIND)
        alphabet = b"0123456789+-* \t\r\nx#fn=():\xd9\xa3\x0b"
        monkeypatch.setattr(callgrind, "_BLOCK_BYTES", 32)
    else:
        fast_reading, seeds = "_log_columns", inputs("papyrus", PAPYRUS)
        seeds.append(PAPYRUS.replace(b"\r\n", b"\n").replace(b":QUEUE_PUSH:", b":PUSH:"))
        alphabet = b"0123456789:PUSHOPQE_ \r\n\x0b\x1cf"
        monkeypatch.setattr(papyrus, "_BLOCK_BYTES", 64)
        monkeypatch.setattr(papyrus, "_LINES_AT_ONCE", 3)
    expected = line_by_line(monkeypatch, module, fast_reading)
    fast = getattr(module, fast_reading)
    taken = 0
    for data in mutations(seeds, alphabet, 600, 1):
        assert outcome(module.parse, data) == outcome(expected, data), data
        try:
            fast(data)
            taken += 1
        except (module._Unusual, FormatError):
            pass
    assert taken > 50  # the fast reading is tried on changed files, not only given up

"""Native-tool formats: callgrind, pmcstat callgraphs, Instruments deep copies, Rust symbols in perf.

Exact small cases (weights worked out by hand), the error messages for bad
input, and a real callgrind file written by valgrind on this machine from a C
program compiled here, checked against callgrind_annotate's own totals and the
file's cost lines summed directly.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from flamesight.formats import FormatError, callgrind, instruments, load, pmcstat
from flamesight.formats.rust_symbols import demangle_rust
from flamesight.model import Unit


def weights(profile) -> dict[tuple[str, str | None], tuple[float, float]]:
    """(name, file) -> (self, total) for every frame of `profile`."""
    self_weight, total_weight = profile.frame_weights()
    table = {}
    for index in range(len(profile.frames)):
        frame = profile.frames[index]
        table[(frame.name, frame.file)] = (float(self_weight[index]), float(total_weight[index]))
    return table


def stacks(profile) -> list[tuple[str, float]]:
    """The samples as ("a;b;c", weight), in time order."""
    result = []
    for stack, weight in zip(profile.samples.stack, profile.samples.weight, strict=True):
        names = [profile.frames[f].name for f in profile.stacks.frames_of(int(stack))]
        result.append((";".join(names), float(weight)))
    return result


# callgrind

CALLGRIND = b"""# callgrind format
events: Ir
fl=(1) main.c
fn=(1) main
1 5
cfn=(2) work
calls=2 10
2 100
fi=(2) inline.h
3 7
fe=(1)
fn=(2)
10 60
cfn=(3) leaf
calls=1 20
11 40
"""


def test_callgrind_call_graph_becomes_a_call_tree() -> None:
    group = load(CALLGRIND, "callgrind.out")
    assert group.format == "callgrind"
    (profile,) = group.profiles
    assert profile.name == "callgrind.out -- Ir"
    assert profile.unit is Unit.NONE
    assert weights(profile) == {
        ("main", "main.c"): (12.0, 112.0),  # fi= lines stay with main in main.c
        ("work", "main.c"): (100.0, 100.0),
    }
    # leaf is called but has no cost of its own: it is never entered, and the
    # call's cost (40) stays with work as self cost.
    assert stacks(profile) == [("main;work", 100.0), ("main", 12.0)]


def test_callgrind_splits_shared_callees_by_ratio_and_keeps_recursion_as_self() -> None:
    data = b"""events: Ir
fl=a.c
fn=a
1 10
cfn=c
calls=1 1
1 30
fn=b
1 10
cfn=c
calls=1 1
1 10
fn=c
1 20
cfn=d
calls=1 1
1 20
cfn=c
calls=1 1
1 5
fn=d
1 20
"""
    profile = load(data, "x").profiles[0]
    # c's graph total is 45: 20 self, 20 to d and 5 to itself; a's call (30)
    # takes 2/3 of it, b's (10) 2/9. The recursive edge stays with c as self.
    table = weights(profile)
    assert table[("a", "a.c")] == pytest.approx((10.0, 40.0))
    assert table[("b", "a.c")] == pytest.approx((10.0, 20.0))
    assert table[("c", "a.c")][0] == pytest.approx((20 + 5) * (30 + 10) / 45)
    assert table[("d", "a.c")] == pytest.approx((20 * 40 / 45, 20 * 40 / 45))
    assert profile.total_weight == pytest.approx(60.0)


def test_callgrind_xdebug_units_and_several_events() -> None:
    data = b"events: Time_(10ns) Memory_(bytes) Calls\nfl=a.php\nfn=main\n1 7 300 1\n"
    group = load(data, "cachegrind.out.1")
    assert [p.name for p in group.profiles] == [
        "cachegrind.out.1 -- Time",
        "cachegrind.out.1 -- Memory",
        "cachegrind.out.1 -- Calls",
    ]
    assert [p.unit for p in group.profiles] == [Unit.NANOSECONDS, Unit.BYTES, Unit.NONE]
    assert [p.total_weight for p in group.profiles] == [70.0, 300.0, 1.0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"# callgrind format\nfn=main\n1 2\n", "line 3: a cost line before the 'events:' header"),
        (b"# callgrind format\nfl=a\n", "whole file: no 'events:' header"),
        (b"events: Ir\nevents: Dr\n", "line 2: a second 'events:' header"),
        (b"events: Ir\nfn=(3)\n", r"line 2: name id \(3\) used before it is defined"),
        (b"events: Ir\nfn=(1) a\nfn=(1) b\n", r"line 3: name id \(1\) redefined as 'b'"),
        (
            b"events: Ir\nfn=a\nwhat is this\n",
            "line 3: expected 'key: value', 'key=value' or a cost",
        ),
        (b"events: Ir\nfn=a\ncfn=b\ncalls=1 2", "line 4: the file ends after 'calls='"),
        (b"events: Ir\nfn=a\ncfn=b\ncalls=1 2\n", "line 5: expected the cost line of the call"),
        (
            b"events: Ir\nfn=a\ncfn=b\ncalls=1 2\nfn=c\n",
            "line 5: expected the cost line of the call",
        ),
        (b"events: Ir\nfn=a\n1 " + b"9" * 40 + b"\n", "line 3: number '9999.* is too long"),
    ],
)
def test_callgrind_errors_name_the_line(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=f"^callgrind, {message}"):
        callgrind.parse(data, "x")


def callgrind_annotate_costs(path: Path, *, inclusive: bool) -> dict[str, int]:
    """function -> cost, as callgrind_annotate prints it for functions of t.c."""
    output = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    costs = {}
    for match in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+\S*t\.c:(\w+)", output, re.MULTILINE):
        costs.setdefault(match.group(2), int(match.group(1).replace(",", "")))
    return costs


def summed_self_cost_lines(path: Path) -> int:
    """The Ir of every cost line that is not a call's, summed straight from the file."""
    total = 0
    after_calls = False
    for line in path.read_text().splitlines():
        if line.startswith("calls="):
            after_calls = True
            continue
        if re.match(r"^[+\-*\d]", line):
            if not after_calls:
                total += int(line.split()[1])
            after_calls = False
    return total


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
@pytest.mark.skipif(shutil.which("callgrind_annotate") is None, reason="no callgrind_annotate")
@pytest.mark.timeout(120)
def test_callgrind_file_written_by_valgrind(tmp_path: Path) -> None:
    source = tmp_path / "t.c"
    source.write_text(
        "static int leaf(int n) { int s = 0; for (int i = 0; i < n; i++) s += i * i; return s; }\n"
        "static int middle(int n) { return leaf(n * 50) + leaf(n); }\n"
        "int main(void) { int t = 0; for (int i = 0; i < 30; i++) t += middle(i); return t & 1; }\n"
    )
    binary = tmp_path / "t"
    subprocess.run(["gcc", "-O0", "-g", "-o", str(binary), str(source)], check=True)
    out = tmp_path / "callgrind.out"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(binary)],
        capture_output=True,
        check=False,
        cwd=tmp_path,
    )
    assert out.is_file()
    group = load(out)
    assert group.format == "callgrind"
    (profile,) = group.profiles
    assert profile.name == "callgrind.out -- Ir"
    table = {name: w for (name, file), w in weights(profile).items() if file == str(source)}
    inclusive = callgrind_annotate_costs(out, inclusive=True)
    exclusive = callgrind_annotate_costs(out, inclusive=False)
    for function in ("main", "middle", "leaf"):
        assert table[function] == pytest.approx((exclusive[function], inclusive[function]))
    # The program's entry point holds everything the program ran: its subtree
    # is the sum of the file's self-cost lines (and the file's own "totals:").
    program_total = summed_self_cost_lines(out)
    assert f"totals: {program_total}" in out.read_text()
    roots = profile.stacks.parent < 0
    subtree = profile.stacks.subtree_sums(profile.stack_weights())
    assert max(subtree[roots]) == pytest.approx(program_total)


# pmcstat


def test_pmcstat_chains_are_root_first_samples() -> None:
    data = (
        b"@ cycles [10 samples]\n\n"
        b"60.00%  [6]     leaf @ /bin/app\n"
        b" 100.0%  [6]      main\n\n"
        b"40.00%  [4]     other @ /lib/libc.so\n"
        b" 75.00%  [3]      leaf @ /bin/app\n"
        b"  100.0%  [3]       main\n"
        b" 25.00%  [1]      main\n"
        b"not a callgraph line\n"
    )
    group = load(data, "pmc.txt")
    assert group.format == "pmcstat"
    (profile,) = group.profiles
    assert profile.name == "pmc.txt" and profile.unit is Unit.NONE
    assert stacks(profile) == [("main;leaf", 6.0), ("main;leaf;other", 3.0), ("main;other", 1.0)]
    assert weights(profile) == {
        ("leaf", "/bin/app"): (6.0, 9.0),
        ("main", "/bin/app"): (0.0, 10.0),  # a frame keeps the object first seen with it
        ("other", "/lib/libc.so"): (4.0, 4.0),
    }


def test_pmcstat_errors() -> None:
    with pytest.raises(FormatError, match=r"^pmcstat callgraph, whole file: no callgraph line"):
        pmcstat.parse(b"@ cycles [1 samples]\n", "x")
    with pytest.raises(FormatError, match=r"^pmcstat callgraph, line 3: indented 3 spaces"):
        pmcstat.parse(b"@ cycles [1 samples]\n1.0%  [1]  a\n   1.0%  [1]  b\n", "x")


# Instruments


def test_instruments_deep_copy_of_instruments_16() -> None:
    data = (
        "Weight\tSelf Weight\tSymbol Names\n"
        "2.50 s  100.0%\t0 s\t   start\n"
        "2.00 s  80.0%\t1.50 s\t    main\n"
        "500.00 ms  \u20070.0%\t500.00 ms\t     work\n"
        "500.00 ms  20.0%\t500.00 ms\t    idle\n"
    ).encode()
    group = load(data, "deep-copy.txt")
    assert group.format == "instruments"
    (profile,) = group.profiles
    assert profile.name == "deep-copy.txt" and profile.unit is Unit.MILLISECONDS
    assert stacks(profile) == [
        ("start;main;work", 500.0),
        ("start;main", 1500.0),
        ("start;idle", 500.0),
    ]


def test_instruments_allocations_and_cycles_units() -> None:
    allocations = (
        b"Bytes Used\tCount\tSource Path\tSymbol Name\n"
        b"1.50 KB  100.0%\t3\tmain.c\tmain\n"
        b"512 Bytes  33.3%\t1\t\t leak\n"
    )
    profile = load(allocations, "a.txt").profiles[0]
    assert profile.unit is Unit.BYTES
    assert weights(profile) == {
        ("main", "main.c"): (1024.0, 1536.0),
        ("leak", None): (512.0, 512.0),
    }
    cycles = b"Weight\tSelf Weight\t\tSymbol Name\n2.00 Kc  100.0%\t-\t \tmain\n"
    profile = load(cycles, "c.txt").profiles[0]
    assert profile.unit is Unit.NONE and profile.total_weight == 2000.0


def test_instruments_errors() -> None:
    header = b"Running Time\tSelf (ms)\t\tSymbol Name\n"
    with pytest.raises(FormatError, match=r"^Instruments, line 3: 'b' is indented 3 spaces"):
        instruments.parse(header + b"1.0ms 100.0%\t1\t \ta\n1.0ms 100.0%\t1\t \t   b\n", "x")
    with pytest.raises(FormatError, match=r"^Instruments, line 2: unknown unit 'parsecs'"):
        instruments.parse(header + b"1.0 parsecs 100.0%\t1\t \ta\n", "x")
    with pytest.raises(FormatError, match=r"^Instruments, whole file: no row with a symbol"):
        instruments.parse(header, "x")
    with pytest.raises(FormatError, match=r"^Instruments, line 1: no 'Weight'"):
        instruments.parse(b"Count\tSymbol Name\n1\tmain\n", "x")


def test_instruments_trace_zip_is_refused_with_the_reason() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("run.trace/corespace/MANIFEST.plist", b"")
    with pytest.raises(FormatError) as caught:
        load(buffer.getvalue(), "run.trace.zip")
    assert str(caught.value).startswith(
        "Instruments, run.trace: reading this .trace bundle is not supported; "
    )
    assert "Deep Copy" in str(caught.value)


def test_instruments_trace_zip_with_a_bad_template_names_it() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("run.trace/corespace/MANIFEST.plist", b"")
        archive.writestr("run.trace/form.template", b"not a plist")
    with pytest.raises(FormatError, match=r"^Instruments, run.trace/form.template: not a property"):
        load(buffer.getvalue(), "run.trace.zip")


def test_instruments_trace_zips_of_the_corpus_say_what_they_recorded(conformance_dir: Path) -> None:
    """Allocations bundles are refused with the reason."""
    folder = conformance_dir / "profiles" / "Instruments"
    for path, recorded in [
        ("7.3.1/random-allocations.trace.zip", "allocations"),
        ("8.3.3/simple-allocations.trace.zip", "allocations"),
        ("9.3.1/random-allocations.trace.zip", "allocations"),
    ]:
        with pytest.raises(FormatError, match=f"not supported \\(it recorded {recorded}\\)"):
            load(folder / path)


def test_instruments_grammar_files_are_not_profiles(conformance_dir: Path) -> None:
    """The .grammar files beside the 8.3.3 traces describe binary layouts: they fail clearly."""
    for path in (conformance_dir / "profiles" / "Instruments" / "8.3.3").glob("*.grammar"):
        with pytest.raises(FormatError, match="not a profile flamesight can read"):
            load(path)


# Rust symbols in perf script


@pytest.mark.parametrize(
    ("symbol", "shown"),
    [
        ("_RNvCskwGfYPst2Cb_3foo16example_function", "foo::example_function"),
        (
            "_ZN3std2fs8Metadata7created17h8df207f105c5d474E",
            "std::fs::Metadata::created::h8df207f105c5d474",
        ),
        (
            "_ZN4core3ptr85drop_in_place$LT$std..rt..lang_start$LT$$LP$$RP$$GT$..$u7b$$u7b$closure"
            "$u7d$$u7d$$GT$17h0123456789abcdefE.llvm.1234",
            "core::ptr::drop_in_place<std::rt::lang_start<()>::{{closure}}>::h0123456789abcdef",
        ),
        ("_RNvMsr_NtCs3ssYzQotkvD_3std4pathNtB5_7PathBuf3new", "<std::path::PathBuf>::new"),
        ("_RINvNtC3std3mem8align_ofdE", "std::mem::align_of::<f64>"),
        (
            "_RINbNbCskIICzLVDPPb_5alloc5alloc8box_freeDINbNiB4_5boxed5FnBoxuEp6OutputuEL_"
            "ECs1iopQbuBiw2_3std",
            "alloc::alloc::box_free::<dyn alloc::boxed::FnBox<(), Output = ()>>",
        ),
        (
            "_RNCNkNvNtNtCsiznFMVuT3yX_4rand4rngs6thread14THREAD_RNG_KEY00B9_",
            "rand::rngs::thread::THREAD_RNG_KEY::{closure#0}",
        ),
        ("_Z5deltav", "_Z5deltav"),  # C++ stays as perf printed it
        ("_ZN3foo3barE", "_ZN3foo3barE"),  # C++ without a Rust hash segment
        ("_ZoomIn", "_ZoomIn"),
        ("_RNvB0_3foo", "_RNvB0_3foo"),  # a backreference to itself: not valid, kept
        ("_R" + "INv" * 5000 + "C3foo", "_R" + "INv" * 5000 + "C3foo"),  # too deep: kept
    ],
)
def test_rust_symbols(symbol: str, shown: str) -> None:
    assert demangle_rust(symbol) == shown


def test_perf_script_demangles_rust_symbols(conformance_dir: Path) -> None:
    group = load(conformance_dir / "profiles" / "linux-perf" / "rust-mangled.linux-perf.txt")
    names = {
        profile.frames[i].name for profile in group.profiles for i in range(len(profile.frames))
    }
    assert "trace::multiply_matrices" in names
    assert "std::rt::lang_start::<()>" in names
    assert (
        "<rand_chacha::chacha::ChaCha12Core as rand_core::block::BlockRngCore>::generate" in names
    )
    assert not [name for name in names if name.startswith("_R")]
    cpp = load(conformance_dir / "profiles" / "linux-perf" / "simple.linux-perf.txt").profiles[0]
    assert "_Z5deltav" in {cpp.frames[i].name for i in range(len(cpp.frames))}

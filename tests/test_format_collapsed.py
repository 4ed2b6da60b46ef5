"""Collapsed stacks: real files, encodings, skipped lines and errors."""

from __future__ import annotations

import pytest

from flamesight.formats import FormatError, collapsed, load
from flamesight.model import Unit


def weights_by_name(profile) -> dict[str, tuple[float, float]]:
    self_weight, total_weight = profile.frame_weights()
    return {
        profile.frames[i].name: (float(self_weight[i]), float(total_weight[i]))
        for i in range(len(profile.frames))
    }


SIMPLE = b"a;b;c 1\na;b;c 1\na;b;d 4\na;b;c 3\na;b 5\n"
EXPECTED = {"a": (0, 14), "b": (5, 14), "c": (5, 5), "d": (4, 4)}


@pytest.mark.parametrize(
    "data",
    [
        SIMPLE,
        SIMPLE.replace(b"\n", b"\r\n"),
        b"\xff\xfe" + SIMPLE.decode().encode("utf-16-le"),
        b"\xfe\xff" + SIMPLE.decode().encode("utf-16-be"),
        b"\xef\xbb\xbf" + SIMPLE,
        b"# header\n// comment\n" + SIMPLE + b"not a sample line\n\n",
    ],
    ids=["utf8", "crlf", "utf16-le", "utf16-be", "utf8-bom", "with-invalid-lines"],
)
def test_encodings_and_skipped_lines(data: bytes) -> None:
    assert collapsed.sniff(data)
    group = load(data, "simple.txt")
    assert group.format == "collapsed"
    (profile,) = group.profiles
    assert profile.unit is Unit.NONE and profile.name == "simple.txt"
    assert weights_by_name(profile) == EXPECTED
    assert profile.samples.weight.tolist() == [1, 1, 4, 3, 5]
    assert profile.samples.time.tolist() == [0, 1, 2, 6, 9]


def test_frames_with_spaces_and_unicode() -> None:
    profile = load("main;Foo::bar(int, char) [clone .cold];🔥 render 7\n".encode()).profiles[0]
    assert weights_by_name(profile)["🔥 render"] == (7, 7)
    assert weights_by_name(profile)["Foo::bar(int, char) [clone .cold]"] == (0, 7)


def test_py_spy_raw_style_file(tmp_path) -> None:
    path = tmp_path / "renamed.json"  # the name does not matter, the content does
    path.write_bytes(b"process 1:main (app.py:3);work (app.py:9) 40\nprocess 1:main (app.py:3) 2\n")
    profile = load(path).profiles[0]
    assert profile.total_weight == 42
    assert weights_by_name(profile)["work (app.py:9)"] == (40, 40)


def test_not_claimed_when_most_lines_are_something_else() -> None:
    assert not collapsed.sniff(b'{"traceEvents": []}\n')
    assert not collapsed.sniff(b"hello world\nthis is prose\nwith 3 lines and a number 4\nnope\n")


def test_no_sample_line_is_an_error() -> None:
    with pytest.raises(FormatError, match=r"collapsed stacks, whole file: no line of the form"):
        collapsed.parse(b"# only a comment\n", "x")


def test_huge_count_names_the_line() -> None:
    with pytest.raises(
        FormatError, match=r"collapsed stacks, line 2: sample count 9+\.\.\. is too large"
    ):
        collapsed.parse(b"a;b 1\na;c " + b"9" * 5000 + b"\n", "x")

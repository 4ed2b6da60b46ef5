"""speedscope JSON: import of every version, errors with JSON paths, export round trip."""

from __future__ import annotations

import orjson
import pytest

from flamesight.formats import FormatError, load, speedscope
from flamesight.model import ProfileBuilder, ProfileGroup, Unit
from tests.conftest import CONFORMANCE


def document(*profiles: dict, frames: list | None = None, **extra: object) -> bytes:
    return orjson.dumps(
        {
            "$schema": speedscope.SCHEMA_URL,
            "shared": {"frames": frames if frames is not None else [{"name": "a"}, {"name": "b"}]},
            "profiles": list(profiles),
            **extra,
        }
    )


def test_evented_profile_becomes_samples_of_the_open_stack() -> None:
    events = [
        {"type": "O", "frame": 0, "at": 10},
        {"type": "O", "frame": 1, "at": 12},
        {"type": "C", "frame": 1, "at": 15},
        {"type": "C", "frame": 0, "at": 16},
    ]
    group = load(
        document(
            {
                "type": "evented",
                "name": "p",
                "unit": "milliseconds",
                "startValue": 10,
                "endValue": 16,
                "events": events,
            }
        )
    )
    profile = group.profiles[0]
    assert group.format == "speedscope" and profile.unit is Unit.MILLISECONDS
    assert not profile.sampled
    assert profile.samples.time.tolist() == [10, 12, 15]
    assert profile.samples.weight.tolist() == [2, 3, 1]
    self_weight, total_weight = profile.frame_weights()
    assert self_weight.tolist() == [3, 3] and total_weight.tolist() == [6, 3]


def test_several_profiles_name_and_active_index() -> None:
    sampled = {
        "type": "sampled",
        "name": "one",
        "unit": "bytes",
        "startValue": 0,
        "endValue": 3,
        "samples": [[0], [0, 1]],
        "weights": [1, 2],
    }
    group = load(document(sampled, {**sampled, "name": "two"}, name="Two", activeProfileIndex=1))
    assert group.name == "Two" and group.active.name == "two"
    assert [p.total_weight for p in group.profiles] == [3, 3]


@pytest.mark.parametrize(
    ("profile", "where", "problem"),
    [
        (
            {"type": "sampled", "unit": "none", "samples": [[0, 7]], "weights": [1]},
            r"\$\.profiles\[0\]\.samples\[0\]\[1\]",
            "not in",
        ),
        (
            {"type": "sampled", "unit": "none", "samples": [[0]], "weights": [1, 2]},
            r"\$\.profiles\[0\]\.weights",
            "2 weights for 1 samples",
        ),
        (
            {"type": "sampled", "unit": "parsecs", "samples": [], "weights": []},
            r"\$\.profiles\[0\]\.unit",
            "unknown unit",
        ),
        (
            {
                "type": "evented",
                "unit": "none",
                "events": [{"type": "O", "frame": 0, "at": 1}, {"type": "C", "frame": 1, "at": 2}],
            },
            r"\$\.profiles\[0\]\.events\[1\]",
            "closes 'b' while 'a'",
        ),
        (
            {
                "type": "evented",
                "unit": "none",
                "events": [{"type": "O", "frame": 0, "at": 5}, {"type": "C", "frame": 0, "at": 2}],
            },
            r"\$\.profiles\[0\]\.events\[1\]\.at",
            "before the previous",
        ),
    ],
)
def test_errors_name_the_json_path(profile: dict, where: str, problem: str) -> None:
    with pytest.raises(FormatError, match=rf"speedscope JSON, {where}: .*{problem}"):
        load(document(profile))


def test_invalid_json_names_the_byte() -> None:
    with pytest.raises(FormatError, match=r"speedscope JSON, byte \d+: not valid JSON"):
        load(b'{"$schema": "https://www.speedscope.app/file-format-schema.json", "profiles": [')


def rich_group() -> ProfileGroup:
    a = ProfileBuilder("main thread", Unit.MICROSECONDS)
    main = a.frame("main", "app.js", 1, 1)
    work = a.frame("work", "app.js", 10, 3)
    a.add_sample(a.stack_of([main, work]), 5.5, 100.0)
    a.add_sample(a.stack_of([main]), 2.0, 105.5)
    a.add_sample(-1, 1.0, 107.5)
    a.add_sample(a.stack_of([main, work, work]), 4.0, 120.0)  # after a gap
    b = ProfileBuilder("heap", Unit.BYTES)
    b.add_sample(b.stack_of([b.frame("alloc", "lib.c", 7)]), 4096)
    return ProfileGroup("recording", [a.build(), b.build()], active_index=1)


def test_export_round_trip_keeps_every_number(tmp_path) -> None:
    original = rich_group()
    path = tmp_path / "out.speedscope.json"
    path.write_bytes(speedscope.export(original))
    again = load(path)
    assert again.name == "recording" and again.active_index == 1
    for before, after in zip(original.profiles, again.profiles, strict=True):
        assert (after.name, after.unit) == (before.name, before.unit)
        assert (after.start, after.end) == (before.start, before.end)
        frames_before = [before.frames[i] for i in range(len(before.frames))]
        frames_after = [after.frames[i] for i in range(len(after.frames))]
        assert frames_after == frames_before
        assert [w.tolist() for w in after.frame_weights()] == [
            w.tolist() for w in before.frame_weights()
        ]
        on_stack = before.samples.stack >= 0
        kept = after.samples.stack >= 0
        assert after.samples.time[kept].tolist() == before.samples.time[on_stack].tolist()
        assert after.samples.weight[kept].tolist() == before.samples.weight[on_stack].tolist()
        paths = [before.stacks.frames_of(s) for s in before.samples.stack[on_stack]]
        assert [after.stacks.frames_of(s) for s in after.samples.stack[kept]] == paths
    idle = again.profiles[0].samples.weight[again.profiles[0].samples.stack < 0]
    assert idle.tolist() == [1.0, 11.5], "idle time and the gap survive as idle samples"


def test_export_has_what_the_schema_requires() -> None:
    schema_path = CONFORMANCE / "speedscope-file-format-schema.json"
    if not schema_path.is_file():
        pytest.skip(f"speedscope schema not found at {schema_path}")
    schema = orjson.loads(schema_path.read_bytes())
    exported = orjson.loads(speedscope.export(rich_group()))
    definitions = schema["definitions"]
    assert set(definitions["FileFormat.File"]["required"]) <= set(exported)
    for profile in exported["profiles"]:
        assert set(definitions["FileFormat.SampledProfile"]["required"]) <= set(profile)
        assert profile["unit"] in definitions["FileFormat.ValueUnit"]["enum"]
    for frame in exported["shared"]["frames"]:
        assert set(definitions["FileFormat.Frame"]["required"]) <= set(frame)

"""flamesight.analysis: exact results on small profiles, properties on generated ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flamesight.analysis import (
    call_tree,
    callees,
    callers,
    diff_profiles,
    diff_ranges,
    estimate_tokens,
    fold_chain,
    hot_paths,
    profile_breakdown,
    search_frames,
    summary,
    top_functions,
)
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit


def small_profile() -> Profile:
    """main calls slow through 8 wrappers, through g (recursively) and through h."""
    b = ProfileBuilder("small", Unit.MILLISECONDS)
    main = b.frame("main", "m.py", 1)
    wrappers = [b.frame(f"wrap{i}", "w.py", i) for i in range(8)]
    slow = b.frame("slow", "s.py", 3)
    g, h = b.frame("g"), b.frame("h")
    b.add_sample(b.stack_of([main, *wrappers, slow]), 5)
    b.add_sample(b.stack_of([main, g, slow, g, slow]), 3)
    b.add_sample(b.stack_of([main, h]), 2)
    b.add_sample(-1, 1)
    b.add_sample(b.stack_of([main, h, slow, h]), 4)
    return b.build()


def names(nodes) -> list[str]:
    return [n.name for n in nodes]


def test_top_functions_by_self_and_total() -> None:
    top = top_functions(small_profile(), by="self")
    assert top.total == 15
    assert [(f.name, f.self, f.total) for f in top.functions] == [
        ("slow", 8, 12),
        ("h", 6, 6),
        ("main", 0, 14),
        ("wrap0", 0, 5),
        ("wrap1", 0, 5),
        ("wrap2", 0, 5),
        ("wrap3", 0, 5),
        ("wrap4", 0, 5),
        ("wrap5", 0, 5),
        ("wrap6", 0, 5),
        ("wrap7", 0, 5),
        ("g", 0, 3),
    ][:20]
    by_total = top_functions(small_profile(), by="total", n=2)
    assert [(f.name, f.total_pct) for f in by_total.functions] == [
        ("main", pytest.approx(100 * 14 / 15)),
        ("slow", pytest.approx(80.0)),
    ]


def test_top_functions_of_a_range_clip_straddling_samples() -> None:
    top = top_functions(small_profile(), start=3, end=9)
    assert top.total == 6
    assert {f.name: f.self for f in top.functions if f.self} == {"slow": 5, "h": 1}


def test_call_tree_depth_limit_and_weights() -> None:
    tree = call_tree(small_profile(), depth=2)
    (main,) = tree.roots
    assert (main.name, main.self, main.total) == ("main", 0, 14)
    assert [(c.name, c.total) for c in main.children] == [("h", 6), ("wrap0", 5), ("g", 3)]
    assert all(c.children == [] for c in main.children)
    assert tree.to_dict()["roots"][0]["total_pct"] == pytest.approx(100 * 14 / 15)


def test_callers_count_recursion_once() -> None:
    tree = callers(small_profile(), "slow", depth=2)
    (slow,) = tree.roots
    assert (slow.self, slow.total) == (8, 12)
    assert [(c.name, c.total) for c in slow.children] == [("wrap7", 5), ("h", 4), ("g", 3)]


def test_callees_merge_call_sites() -> None:
    (slow,) = callees(small_profile(), "slow").roots
    assert (slow.total, slow.self) == (12, 5)
    assert [(c.name, c.total, c.self) for c in slow.children] == [("h", 4, 4), ("g", 3, 0)]
    assert [(c.name, c.total) for c in slow.children[1].children] == [("slow", 3)]


def test_unknown_function_suggests_close_names() -> None:
    with pytest.raises(LookupError, match=r"no function named 'slw'.*'slow'"):
        callers(small_profile(), "slw")


def test_hot_paths_fold_single_child_chains() -> None:
    paths = hot_paths(small_profile(), n=3)
    assert [p.text for p in paths] == [
        "main -> ... 8 frames ... -> slow",
        "main -> h -> slow -> h",
        "main -> g -> slow -> g -> slow",
    ]
    assert [p.weight for p in paths] == [5, 4, 3]
    assert paths[0].depth == 10


def test_fold_chain_keeps_short_runs() -> None:
    assert fold_chain(list("abcde"), [True] * 5, keep=3) == list("abcde")
    assert fold_chain(list("abcdef"), [True] * 6, keep=3) == ["a", "... 4 frames ...", "f"]
    assert fold_chain(list("abcdefg"), [1, 1, 1, 0, 1, 1, 1], keep=1) == [
        "a",
        "... 2 frames ...",
        "d",
        "... 2 frames ...",
        "g",
    ]


def test_search_frames_substring_and_regex() -> None:
    found = search_frames(small_profile(), "WRAP")
    assert len(found) == 8 and all(f.name.startswith("wrap") for f in found)
    assert [f.name for f in search_frames(small_profile(), r"^(g|h)$", regex=True)] == ["h", "g"]
    assert [f.name for f in search_frames(small_profile(), "s.py")] == ["slow"]
    with pytest.raises(ValueError, match="bad regular expression"):
        search_frames(small_profile(), "(", regex=True)


def test_breakdown_shares_of_a_group() -> None:
    a, b = small_profile(), small_profile().slice(0, 5)
    b.name = "worker"
    shares = profile_breakdown(ProfileGroup("g", [a, b]))
    assert [(s.name, s.total, round(s.share_pct, 2)) for s in shares] == [
        ("small", 15, 75.0),
        ("worker", 5, 25.0),
    ]
    assert shares[1].top_function == "slow"


def test_diff_of_a_profile_with_itself_is_zero() -> None:
    diff = diff_profiles(small_profile(), small_profile())
    assert not diff.normalised
    assert all(c.delta == 0 and c.status == "same" for c in diff.functions)


def test_diff_ranges_normalises_and_finds_new_and_gone() -> None:
    diff = diff_ranges(small_profile(), (0, 5), (5, 15))
    assert diff.normalised and diff.before_total == 5 and diff.after_total == 10
    changes = {c.name: c for c in diff.functions}
    assert changes["slow"].before == 5 and changes["slow"].after == pytest.approx(3 * 0.5)
    assert changes["h"].status == "new" and [c.name for c in diff.new] == ["h"]
    reverse = diff_ranges(small_profile(), (5, 15), (0, 5))
    assert [c.name for c in reverse.gone] == ["h"]


def test_diff_refuses_different_units() -> None:
    other = ProfileBuilder("bytes", Unit.BYTES)
    other.add_sample(other.stack_of([other.frame("x")]), 1)
    with pytest.raises(ValueError, match=r"milliseconds.*bytes"):
        diff_profiles(small_profile(), other.build())


def test_summary_document_and_markdown() -> None:
    result = summary(small_profile(), budget_tokens=2000)
    data = result.data
    assert data["profile"]["unit"] == "milliseconds"
    assert data["range"]["weight"] == "15.0 ms"
    assert data["top_self"][0] == {
        "name": "slow",
        "file": "s.py:3",
        "self": "8.00 ms",
        "self_pct": 53.3,
        "total_pct": 80.0,
    }
    kinds = [p["kind"] for p in data["patterns"]]
    assert kinds == ["dominant_function", "idle"]
    assert "| slow | s.py:3 | 8.00 ms | 53.3 | 80.0 |" in result.markdown
    assert "main -> ... 8 frames ... -> slow" in result.markdown
    assert max(result.json_tokens, result.markdown_tokens) <= 2000
    assert result.json_tokens == estimate_tokens(result.json())


def test_summary_drops_least_important_rows_first() -> None:
    profile = generated_profile(20_000, seed=3)
    roomy = summary(profile, budget_tokens=6000).data
    tight = summary(profile, budget_tokens=600)
    assert max(tight.json_tokens, tight.markdown_tokens) <= 600
    assert tight.data["top_self"], "the most important rows survive"
    assert tight.data["top_self"][0] == roomy["top_self"][0]
    assert not tight.data["timeline"] and tight.data["omitted_rows"]["timeline"] > 0


def test_summary_refuses_a_budget_too_small() -> None:
    with pytest.raises(ValueError, match="at least 300 tokens"):
        summary(small_profile(), budget_tokens=50)


def test_summary_names_patterns() -> None:
    b = ProfileBuilder("gc-heavy", Unit.MICROSECONDS)
    main = b.frame("main")
    gc = b.frame("(garbage collector)")
    rec = b.frame("walk")
    b.add_sample(b.stack_of([main, gc]), 30)
    b.add_sample(b.stack_of([main, *[rec] * 12]), 30)
    for i in range(40):
        b.add_sample(b.stack_of([main, b.frame(f"tiny{i}")]), 1)
    b.add_sample(b.stack_of([b.frame("(idle)")]), 20)
    kinds = {p["kind"] for p in summary(b.build()).data["patterns"]}
    assert {"garbage_collection", "deep_recursion", "idle"} <= kinds
    tail = ProfileBuilder("tail", Unit.NONE)
    for i in range(200):
        tail.add_sample(tail.stack_of([tail.frame(f"f{i}")]), 1)
    worker = ProfileBuilder("idle thread", Unit.NONE)
    worker.add_sample(worker.stack_of([worker.frame("wait")]), 1)
    group = ProfileGroup("g", [tail.build(), worker.build()])
    kinds = {p["kind"] for p in summary(group).data["patterns"]}
    assert {"long_tail", "one_thread"} <= kinds


# generated profiles


def generated_profile(
    samples: int,
    seed: int = 0,
    frames: int = 2000,
    planted: str | None = None,
    plant: str = "wrapped",
) -> Profile:
    """A random profile; with `planted`, one slow function hidden in a chosen way."""
    rng = np.random.default_rng(seed)
    b = ProfileBuilder(f"generated-{samples}", Unit.MICROSECONDS)
    ids = [b.frame(f"fn_{i}", f"mod{i % 40}.py", i) for i in range(frames)]
    stacks = np.array(
        [
            b.stack_of([ids[j] for j in rng.integers(0, frames, rng.integers(3, 25))])
            for _ in range(3000)
        ]
    )
    chosen = stacks[rng.integers(0, len(stacks), samples)]
    weights = rng.exponential(10.0, samples)
    if planted:
        slow = b.frame(planted, "planted.py", 7)
        if plant == "wrapped":  # deep under 60 wrappers, in 8 % of samples
            wrappers = [b.frame(f"wrapper_{i}", "wrap.py", i) for i in range(60)]
            target = np.array([b.stack_of([*wrappers, slow])])
            pick = rng.random(samples) < 0.08
        elif plant == "spread":  # called from 500 different callers
            target = np.array([b.stack_of([ids[i], slow]) for i in range(500)])
            pick = rng.random(samples) < 0.08
        else:  # a short burst: 3 % of the trace's time, all of it the planted function
            target = np.array([b.stack_of([ids[0], slow])])
            pick = np.zeros(samples, bool)
            first = int(samples * 0.6)
            pick[first : first + max(1, samples // 30)] = True
        chosen[pick] = target[rng.integers(0, len(target), int(pick.sum()))]
    b.add_samples(chosen, weights)
    return b.build()


PLANTED_CASES = [
    *[(size, plant) for size in (1_000, 100_000) for plant in ("wrapped", "spread", "burst")],
    (5_000_000, "wrapped"),
]


@pytest.mark.parametrize(("samples", "plant"), PLANTED_CASES)
def test_planted_slow_function_is_in_the_top_three(samples: int, plant: str) -> None:
    profile = generated_profile(samples, seed=samples % 97, planted="parse_everything", plant=plant)
    result = summary(profile, budget_tokens=2000)
    assert max(result.json_tokens, result.markdown_tokens) <= 2000
    assert "parse_everything" in [row["name"] for row in result.data["top_self"][:3]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    samples=st.integers(1, 30_000),
    frames=st.integers(1, 3000),
    seed=st.integers(0, 2**16),
    budget=st.sampled_from([300, 500, 1000, 2000, 6000]),
)
def test_summary_fits_any_budget(samples: int, frames: int, seed: int, budget: int) -> None:
    profile = generated_profile(samples, seed=seed, frames=frames)
    result = summary(profile, budget_tokens=budget)
    assert max(result.json_tokens, result.markdown_tokens) <= budget


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), cut=st.floats(0, 1), width=st.floats(0, 1))
def test_diff_with_itself_is_zero_and_total_at_least_self(
    seed: int, cut: float, width: float
) -> None:
    profile = generated_profile(500, seed=seed, frames=50)
    start = profile.start + cut * (profile.end - profile.start)
    part = profile.slice(start, start + width * (profile.end - profile.start))
    assert all(c.delta == 0 for c in diff_profiles(part, part).functions)
    for function in top_functions(part, n=None).functions:
        assert function.total >= function.self - 1e-9


def test_summary_with_huge_names_fits_the_smallest_budget() -> None:
    b = ProfileBuilder("n" * 5000, Unit.BYTES)
    for i in range(50):
        name = f"std::vector<std::map<{'x' * 3000}>>::operator[]#{i}"
        b.add_sample(b.stack_of([b.frame(name, "/very/long/path/" * 200 + "f.cc", i)]), 1000 + i)
    result = summary(b.build(), budget_tokens=300)
    assert max(result.json_tokens, result.markdown_tokens) <= 300
    assert result.data["top_self"][0]["name"].endswith("…")

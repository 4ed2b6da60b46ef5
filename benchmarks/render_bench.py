"""Speed of the renderer on large generated profiles.

Prints one table: for profiles of 1 M and 10 M samples (3 000 frames over
20 000 distinct stacks 10-40 deep, some recursion), the time to lay out and
write a 1200x800 PNG of each view, and the layout alone. The first render
of a profile also builds its per-profile caches (stacks merged by function),
so it has its own column; the other columns are the best of a few runs.

    .venv/bin/python benchmarks/render_bench.py [--samples 1000000 10000000]

Targets (issue 3): a 1200x800 PNG of a 1 M-sample profile < 300 ms; a
10 M-sample profile renders in under 1 s.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import numpy as np

from flamesight.model import Profile, ProfileBuilder, Unit
from flamesight.render import (
    FlameLayout,
    layout_flamechart,
    layout_flamegraph,
    layout_sandwich,
    render_flamegraph,
)
from flamesight.render.scene import rows_for_height

WIDTH, HEIGHT = 1200, 800
SANDWICH_FUNCTION = "module7.function_7"


def generated_profile(samples: int, seed: int = 7) -> Profile:
    """A profile of `samples` samples over 20 000 distinct stacks of 3 000 frames.

    Stacks share prefixes (main -> event_loop -> a few popular functions), so
    the flame graph has wide frames to label as well as a long tail of
    narrow ones; a tenth of them end in recursion.
    """
    rng = np.random.default_rng(seed)
    builder = ProfileBuilder(f"{samples:,} samples", Unit.MICROSECONDS)
    frames = [
        builder.frame(f"module{i % 60}.function_{i}", f"src/module{i % 60}.py", i)
        for i in range(3000)
    ]
    main = builder.frame("main", "app.py", 1)
    loop = builder.frame("event_loop", "app.py", 10)
    stacks = []
    for _ in range(20_000):
        depth = int(rng.integers(10, 40))
        picks = (rng.zipf(1.5, depth) * 7 + np.arange(depth) * 97) % len(frames)
        path = [main, loop, *(frames[int(j)] for j in picks)]
        if rng.random() < 0.1:
            path += [path[-1]] * int(rng.integers(2, 12))
        stacks.append(builder.stack_of(path))
    chosen = np.array(stacks)[rng.zipf(1.3, samples) % len(stacks)]
    builder.add_samples(chosen, rng.exponential(100.0, samples))
    return builder.build()


def best_of(call: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of `repeat` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return 1000 * min(times)


def time_views(profile: Profile) -> None:
    """Print one row per view for `profile`."""
    third = (profile.end - profile.start) / 3
    ranged = {"start": profile.start + third, "end": profile.start + 2 * third}
    layouts: dict[str, Callable[..., FlameLayout]] = {
        "flamegraph": functools.partial(layout_flamegraph, profile),
        "flamechart": functools.partial(layout_flamechart, profile),
        "sandwich": functools.partial(layout_sandwich, profile, SANDWICH_FUNCTION),
    }
    for view, lay_out in layouts.items():
        options = {
            "view": view,
            "function": SANDWICH_FUNCTION if view == "sandwich" else None,
            "width": WIDTH,
            "height": HEIGHT,
        }
        png = functools.partial(render_flamegraph, profile, "png", **options)
        began = time.perf_counter()
        png()
        first = 1000 * (time.perf_counter() - began)
        rows = rows_for_height(HEIGHT)
        print(
            f"{len(profile.samples):>12,} {view:<11} {first:>13.0f} {best_of(png):>8.0f}"
            f" {best_of(functools.partial(lay_out, width=WIDTH, levels=rows)):>10.0f}"
            f" {best_of(functools.partial(png, **ranged)):>13.0f}"
            f" {best_of(functools.partial(render_flamegraph, profile, 'svg', **options), 1):>8.0f}"
            f" {len(lay_out(width=WIDTH, levels=rows)):>7,}",
            flush=True,
        )


def main() -> None:
    """Build each profile and print the timing table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    print(
        f"{'samples':>12} {'view':<11} {'first PNG ms':>13} {'PNG ms':>8} {'layout ms':>10}"
        f" {'range PNG ms':>13} {'SVG ms':>8} {'rects':>7}"
    )
    for samples in args.samples:
        time_views(generated_profile(samples))


if __name__ == "__main__":
    main()

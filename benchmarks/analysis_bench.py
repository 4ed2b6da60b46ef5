"""Speed of the analysis functions on large generated profiles.

Prints one table: for profiles of 1 M and 10 M samples (a few thousand
frames, stacks 10-40 deep, some recursion), the time of slice + top
functions, a call tree, hot paths, and the budgeted summary, each measured
after a first warm-up call (the first call builds per-profile caches; its
time is shown in its own column).

    .venv/bin/python benchmarks/analysis_bench.py [--samples 1000000 10000000]

Targets (issue 3): on 1 M samples, slice + top < 50 ms, summary < 200 ms.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from flamesight.analysis import call_tree, hot_paths, summary, top_functions
from flamesight.model import Profile, ProfileBuilder, Unit


def generated_profile(samples: int, seed: int = 7) -> Profile:
    """A profile of `samples` samples over 20 000 distinct stacks of 3 000 frames."""
    rng = np.random.default_rng(seed)
    builder = ProfileBuilder(f"{samples:,} samples", Unit.MICROSECONDS)
    frames = [
        builder.frame(f"module{i % 60}.function_{i}", f"src/module{i % 60}.py", i)
        for i in range(3000)
    ]
    stacks = []
    for _ in range(20_000):
        depth = int(rng.integers(10, 40))
        path = [frames[j] for j in rng.integers(0, len(frames), depth)]
        if rng.random() < 0.1:
            path += [path[-1]] * int(rng.integers(2, 12))
        stacks.append(builder.stack_of(path))
    chosen = np.array(stacks)[rng.zipf(1.3, samples) % len(stacks)]
    builder.add_samples(chosen, rng.exponential(100.0, samples))
    return builder.build()


def best_of(call: Callable[[], object], repeat: int = 5) -> float:
    """The fastest of `repeat` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return 1000 * min(times)


def main() -> None:
    """Build each profile and print the timing table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    print(
        f"{'samples':>12} {'first top ms':>13} {'slice+top ms':>13} {'call tree ms':>13}"
        f" {'hot paths ms':>13} {'summary ms':>11} {'range summary ms':>17}"
    )
    for samples in args.samples:
        profile = generated_profile(samples)
        lo, hi = profile.start, profile.end
        third = (hi - lo) / 3
        began = time.perf_counter()
        top_functions(profile)
        first = 1000 * (time.perf_counter() - began)
        row = [
            best_of(
                lambda p=profile, a=lo + third, b=lo + 2 * third: top_functions(p, start=a, end=b)
            ),
            best_of(lambda p=profile: call_tree(p, depth=6, min_pct=0.5), repeat=3),
            best_of(lambda p=profile: hot_paths(p, n=10), repeat=3),
            best_of(lambda p=profile: summary(p), repeat=3),
            best_of(lambda p=profile, a=lo + third, b=lo + 2 * third: summary(p, a, b), repeat=3),
        ]
        print(
            f"{samples:>12,} {first:>13.1f} "
            + " ".join(f"{v:>13.1f}" for v in row[:4])
            + f" {row[4]:>17.1f}"
        )


if __name__ == "__main__":
    main()

"""Parsed profiles kept in memory, bounded in bytes, least recently used dropped first.

A profile file is parsed once, in a worker thread (never on the event loop);
later requests for it, and concurrent ones while it is being parsed, get the
same `ProfileGroup`. Sizes are estimates: the NumPy columns' bytes plus the
frame name and file strings. `changed` is set whenever an entry comes or
goes, so a fleet worker can tell Redis which traces it holds.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import numpy as np

from flamesight.model import Profile, ProfileGroup

log = logging.getLogger(__name__)


def array_nbytes(array: np.ndarray) -> int:
    """Bytes held by a column, the Python objects of an object column included."""
    if array.dtype == object:
        return array.nbytes + sum(sys.getsizeof(item) for item in set(array.tolist()))
    return int(array.nbytes)


def profile_nbytes(profile: Profile) -> int:
    """Estimated memory of one profile's tables."""
    frames, stacks, samples = profile.frames, profile.stacks, profile.samples
    columns = [frames.name, frames.file, frames.line, frames.col, stacks.parent, stacks.frame]
    columns += [samples.stack, samples.time, samples.weight]
    return sum(array_nbytes(column) for column in columns)


def group_nbytes(group: ProfileGroup) -> int:
    """Estimated memory of a profile group: the sum over its profiles."""
    return sum(profile_nbytes(profile) for profile in group.profiles)


@dataclass
class CacheStats:
    """What the cache has done: parses run, lookups answered from memory, entries dropped."""

    parses: int = 0
    hits: int = 0
    evictions: int = 0


class ProfileCache:
    """An LRU cache of parsed profile groups holding at most `max_bytes` (estimated)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._entries: OrderedDict[str, tuple[ProfileGroup, int]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[ProfileGroup]] = {}
        self._derived: dict[str, dict[Any, Any]] = {}
        self.bytes_used = 0
        self.changed = asyncio.Event()
        """Set when an entry was added or dropped (whoever waits on it clears it)."""

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        """The keys of the cached groups, least recently used first."""
        return list(self._entries)

    def put(self, key: str, group: ProfileGroup) -> None:
        """Keep `group` as `key` (the most recently used), dropping old entries to fit."""
        self.discard(key)
        size = group_nbytes(group)
        if size > self.max_bytes:
            return
        self._entries[key] = (group, size)
        self.bytes_used += size
        self.changed.set()
        while self.bytes_used > self.max_bytes:
            key, (_, dropped) = self._entries.popitem(last=False)
            self._derived.pop(key, None)
            self.bytes_used -= dropped
            self.stats.evictions += 1

    def discard(self, key: str) -> None:
        """Forget `key` (a deleted trace)."""
        entry = self._entries.pop(key, None)
        self._derived.pop(key, None)
        if entry is not None:
            self.bytes_used -= entry[1]
            self.changed.set()

    def derived(self, key: str) -> dict[Any, Any]:
        """What callers computed from the group cached as `key` (the chat's system message).

        Kept and dropped with the group; a throwaway dict when `key` is not cached.
        """
        if key not in self._entries:
            return {}
        return self._derived.setdefault(key, {})

    async def parse(self, parse: Callable[[], ProfileGroup]) -> ProfileGroup:
        """Run `parse` in a worker thread, counting it."""
        self.stats.parses += 1
        log.info("parsing a trace (%d parses in this process)", self.stats.parses)
        return await anyio.to_thread.run_sync(parse)

    async def get(self, key: str, parse: Callable[[], ProfileGroup]) -> ProfileGroup:
        """The group cached as `key`, or `parse()` run once in a thread and cached.

        Concurrent callers for a key that is being parsed wait for that one parse.
        """
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry[0]
        loading = self._loading.get(key)
        if loading is not None:
            self.stats.hits += 1
            return await asyncio.shield(loading)
        future: asyncio.Future[ProfileGroup] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            group = await self.parse(parse)
        except BaseException as error:
            if isinstance(error, Exception):
                future.set_exception(error)
                future.exception()  # retrieved: no "never retrieved" warning without waiters
            else:
                future.cancel()
            raise
        finally:
            self._loading.pop(key, None)
        future.set_result(group)
        self.put(key, group)
        return group

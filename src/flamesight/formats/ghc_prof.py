"""GHC profiling reports in JSON: the ``.prof`` file a Haskell program writes with ``+RTS -pj``.

Produce it by building with profiling and running with the JSON report::

    ghc -prof -fprof-auto Main.hs && ./Main +RTS -pj -RTS

The document has ``program``, ``tick_interval`` (microseconds),
``cost_centres`` (``id``, ``label``, ``module``, ``src_loc``) and
``profile``: the cost-centre call tree, each node with ``id`` (its cost
centre), ``entries``, ``ticks``, ``alloc`` (bytes) and ``children``.

Read as speedscope reads it: two profiles, "PROGRAM time" and "PROGRAM
allocation", both laid out from the same walk of the tree: a node opens at
the running position, its children follow, then its own ticks (or bytes),
and it closes. Nodes that did nothing (no ticks, entries, allocation or
children) are left out. A frame is ``MODULE.LABEL`` with ``src_loc`` as its
file unless that starts with ``<`` (``<built-in>``, ``<entire-module>``).
Time is in milliseconds: each tick counts ``tick_interval`` microseconds
(speedscope counts a tick as one millisecond, the same for the default 1 ms
interval). The tree is walked without recursion.
"""

from __future__ import annotations

from flamesight.formats.chrome_cpuprofile import describe_json_value, json_head_keys
from flamesight.formats.errors import FormatError, load_json
from flamesight.model import Profile, ProfileBuilder, ProfileGroup, Unit

NAME = "ghc_prof"
TITLE = "GHC profile JSON"

_KEYS = frozenset({"program", "cost_centres", "total_ticks", "tick_interval", "rts_arguments"})
_MAX_VALUE = 1e300


def sniff(head: bytes) -> bool:
    """A JSON object with GHC's top-level report keys (``program``, ``cost_centres``, ...)."""
    opener, keys, _ = json_head_keys(head, max_depth=1)
    top = {key for _, key in keys}
    return opener == b"{" and "program" in top and len(top & _KEYS) >= 3


def parse(data: bytes, name: str) -> ProfileGroup:
    """Read a ``-pj`` report into a time profile and an allocation profile."""
    document = load_json(data, TITLE)
    if not isinstance(document, dict):
        raise FormatError(
            TITLE, "top level", f"expected a JSON object, got {describe_json_value(document)}"
        )
    program = document.get("program")
    if not isinstance(program, str):
        raise FormatError(
            TITLE, "program", f"expected a string, got {describe_json_value(program)}"
        )
    interval = document.get("tick_interval", 1000)
    if not _is_amount(interval) or interval == 0:
        raise FormatError(
            TITLE,
            "tick_interval",
            f"expected a positive number, got {describe_json_value(interval)}",
        )
    centres = _cost_centres(document.get("cost_centres"))
    tree = document.get("profile")
    time = _walk(tree, centres, f"{program} time", Unit.MILLISECONDS, "ticks", interval / 1000)
    allocation = _walk(tree, centres, f"{program} allocation", Unit.BYTES, "alloc", 1.0)
    return ProfileGroup(program, [time, allocation])


def _is_amount(value: object) -> bool:
    """A finite, non-negative JSON number."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= _MAX_VALUE
    )


def _cost_centres(entries: object) -> dict[int, tuple[str, str | None]]:
    """Cost centre id -> (frame name, file)."""
    if not isinstance(entries, list):
        raise FormatError(
            TITLE, "cost_centres", f"expected a list, got {describe_json_value(entries)}"
        )
    centres: dict[int, tuple[str, str | None]] = {}
    for index, entry in enumerate(entries):
        where = f"cost_centres[{index}]"
        if not isinstance(entry, dict):
            raise FormatError(TITLE, where, f"expected an object, got {describe_json_value(entry)}")
        fields = []
        for key in ("label", "module", "src_loc"):
            value = entry.get(key)
            if not isinstance(value, str):
                raise FormatError(
                    TITLE, f"{where}.{key}", f"expected a string, got {describe_json_value(value)}"
                )
            fields.append(value)
        label, module, location = fields
        centre_id = entry.get("id")
        if not isinstance(centre_id, int) or isinstance(centre_id, bool):
            raise FormatError(
                TITLE, f"{where}.id", f"expected an integer, got {describe_json_value(centre_id)}"
            )
        centres[centre_id] = (f"{module}.{label}", None if location.startswith("<") else location)
    return centres


def _walk(
    tree: object,
    centres: dict[int, tuple[str, str | None]],
    name: str,
    unit: Unit,
    measure: str,
    scale: float,
) -> Profile:
    """One profile of the call tree, `measure` ("ticks" or "alloc") times `scale` as each node's own weight."""
    builder = ProfileBuilder(name, unit)
    position = 0.0
    # Every node met as (node, its parent's entry, its index among the parent's children):
    # an error message names the path from these, so no path is built otherwise.
    trail: list[tuple[object, int, int]] = [(tree, -1, 0)]
    # (entry in `trail`, frame or -1 when left out / -2 before the first visit, next child)
    pending: list[tuple[int, int, int]] = [(0, -2, 0)]
    while pending:
        entry, frame, next_child = pending.pop()
        node = trail[entry][0]
        if not isinstance(node, dict):
            raise _node_error(
                trail, entry, "", f"expected an object, got {describe_json_value(node)}"
            )
        children = node.get("children", [])
        if not isinstance(children, list):
            raise _node_error(
                trail, entry, ".children", f"expected a list, got {describe_json_value(children)}"
            )
        if frame == -2:  # first visit: open the node's frame
            amounts = [node.get(key, 0) for key in ("ticks", "entries", "alloc")]
            for key, value in zip(("ticks", "entries", "alloc"), amounts, strict=True):
                if not _is_amount(value):
                    raise _node_error(
                        trail,
                        entry,
                        f".{key}",
                        f"expected a non-negative number, got {describe_json_value(value)}",
                    )
            if not any(amounts) and not children:
                continue
            centre_id = node.get("id")
            centre = centres.get(centre_id) if isinstance(centre_id, int) else None
            if centre is None:
                raise _node_error(
                    trail,
                    entry,
                    ".id",
                    f"cost centre {describe_json_value(centre_id)} is not in cost_centres",
                )
            frame = builder.frame(*centre)
            builder.enter(frame, position)
        if next_child < len(children):
            pending.append((entry, frame, next_child + 1))
            trail.append((children[next_child], entry, next_child))
            pending.append((len(trail) - 1, -2, 0))
            continue
        position += node.get(measure, 0) * scale
        if position > _MAX_VALUE:
            raise _node_error(trail, entry, f".{measure}", "the profile's total is out of range")
        builder.leave(frame, position)
    return builder.build()


def _node_error(
    trail: list[tuple[object, int, int]], entry: int, key: str, problem: str
) -> FormatError:
    """A FormatError naming the tree node `entry` by its path (``profile.children[2]...``)."""
    parts = []
    while trail[entry][1] >= 0:
        parts.append(f".children[{trail[entry][2]}]")
        entry = trail[entry][1]
    return FormatError(TITLE, "profile" + "".join(reversed(parts)) + key, problem)

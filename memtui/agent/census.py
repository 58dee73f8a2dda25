"""Census of live objects by type: counts and shallow sizes of what ``gc.get_objects()`` returns
plus the untracked objects those refer to (str, bytes, int, float, atomic-only dicts and tuples),
the largest containers, and equal str/bytes values held as many separate copies.

How (census_walk.py has the details): the tracked objects are gathered in one C call that keeps
no exact tuple (a host thread may be building one: holding it makes its ``tuple()`` fail, and
its empty slots crash whoever indexes it; tuples still being built are skipped). Each object costs
one short Python loop body; referents come a batch of objects or a slice of one large container
at a time and are filtered to the untracked ones by C builtins. Tracked objects appear exactly
once in ``gc.get_objects()``; an untracked one whose reference count says a single reference
points at it is met exactly once too; only the rest (interned strings, small ints, values shared
by several containers) are marked as seen, in a bitmap over their addresses.

Safety: nothing here runs Python code of the objects or of their classes and metaclasses: no
``__repr__``, ``__len__``, ``__eq__``, ``__hash__``, ``__getattribute__`` or ``__sizeof__``.
Lengths go through the builtin base type's slot, types are keyed by ``id`` and read through
``type``'s own descriptors, descriptions are built from type names, only exact ``str``/``bytes``
values are compared, and sizes are the C ``__sizeof__`` (a Python override is not called: such
objects count at the size of their C layout), so the time budget holds. Frozen objects
(``gc.freeze()``) are invisible to ``gc.get_objects()``; the snapshot's gc section counts them.
Residual hazard: a garbage collection that an allocation inside the gathering C call triggers
may run a ``__del__`` (and let another thread run) while that call holds the object list.
"""
from __future__ import annotations

import sys
import time
from itertools import compress
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import census_walk as walk
from .census_walk import CHECK_EVERY, CONTAINER_BASES, safe_repr, type_name

__all__ = ["CHECK_EVERY", "CONTAINER_BASES", "Census", "census", "count_types", "safe_repr",
           "type_name"]

try:  # the C loop behind collections.Counter
    from _collections import _count_elements
except ImportError:  # pragma: no cover - Pythons without it
    def _count_elements(mapping: Dict[Any, int], iterable: Any) -> None:
        get = mapping.get
        for elem in iterable:
            mapping[elem] = get(elem, 0) + 1

Progress = Callable[[str, int, Optional[int]], None]

# Shorter values are left out of the duplicates report: "" and one latin-1 character are
# singletons in CPython, never copies.
MIN_DUPLICATE_LEN = 2
MAX_DUPLICATE_CANDIDATES = 1_000_000  # values considered at most (a reference each: 8 MB)
# Up to this many distinct values are grouped exactly in one table (~40 bytes each); beyond, a
# 4 MB sketch of hash buckets first picks the values that may repeat.
_EXACT_DISTINCT = 300_000
_SKETCH_SLOTS = 1 << 22
_MULTI = bytes([0, 0] + [1] * 254)  # bucket count -> "two or more"


def count_types(limit: Optional[int] = 50) -> Dict[str, Any]:
    """Counts only, of the objects gc tracks (the ``heap.types`` op): no sizes, no referents,
    so atomic-only dicts, strings and numbers are not in it. Counted by ``id(type)`` in one C call
    over ``gc.get_objects()`` (see census_walk); the classes are held first, so each id names
    one."""
    t0 = time.perf_counter()
    known = walk.classes()
    counts: Dict[int, int] = {}
    _count_elements(counts, map(id, map(type, walk.objects())))
    if any(k not in known for k in counts):  # a class made meanwhile
        known.update(walk.classes())
    by_name: Dict[str, int] = {}
    for k, n in counts.items():
        t = known.get(k)
        name = type_name(t) if t is not None else "?"
        by_name[name] = by_name.get(name, 0) + n
    total = sum(counts.values())
    counts.clear()
    known.clear()
    ranked = sorted(by_name.items(), key=lambda kv: (-kv[1], kv[0]))
    if limit is not None:
        ranked = ranked[:limit]
    return {"types": [{"type": k, "count": v} for k, v in ranked], "objects": total,
            "distinct": len(by_name), "elapsed_s": round(time.perf_counter() - t0, 6)}


class Census:
    """One walk of the heap: ``run()`` returns the census and the largest containers and keeps
    the str/bytes values it met for ``duplicates()``, which must be called next (or the object
    dropped: it holds references to those values)."""

    def __init__(self, budget_s: float = 1.0, progress: Optional[Progress] = None,
                 containers: int = 20, min_duplicate_len: int = MIN_DUPLICATE_LEN,
                 max_candidates: int = MAX_DUPLICATE_CANDIDATES,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget_s = float(budget_s)
        self.progress = progress
        self.containers = containers
        self.min_duplicate_len = min_duplicate_len
        self.max_candidates = max_candidates
        self.clock = clock
        self._texts: Dict[type, List[Any]] = {}  # exact str and bytes values met, by type
        self.candidates_complete = True

    def run(self) -> Dict[str, Any]:
        clock = self.clock
        t0 = clock()
        deadline = t0 + self.budget_s
        # Everything the walk allocates from here on is not in rest, so it is never counted.
        rest, lens, filled, flat = walk.gather()
        strs: List[Any] = []
        raw: List[Any] = []
        self._texts = {str: strs, bytes: raw}
        largest = walk.Largest(self.containers)
        w = walk.Walk(clock, deadline, largest, strs, raw, self.min_duplicate_len,
                      self.max_candidates)
        progress = self.progress
        try:
            tracked = w.tuples(lens, filled)  # complete exact tuples: counted from their lengths
            total = tracked + len(rest)
            complete = w.run([iter((flat,))])  # their untracked items
            for start in range(0, len(rest), CHECK_EVERY):
                if not complete:
                    break
                block = rest[start:start + CHECK_EVERY]
                complete = w.block(block)
                tracked += len(block)
                del block
                if progress is not None:
                    progress("census", tracked, total)
                if complete and tracked < total and clock() > deadline:
                    complete = False
            w.largest_tuples(lens, filled, flat)
        finally:
            for held in (rest, lens, filled, flat):  # rest may hold iterators that refer to it
                held.clear()
            del rest, lens, filled, flat
        self.candidates_complete = w.texts_complete and complete
        merged: Dict[str, List[int]] = {}  # distinct type objects may share a name
        for k, (n, size) in w.stats.items():
            name = type_name(w.types[k])
            m = merged.get(name)
            if m is None:
                merged[name] = [n, size]
            else:
                m[0] += n
                m[1] += size
        del w
        ranked = sorted(merged.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
        objects = sum(v[0] for v in merged.values())
        return {
            "census": {
                "complete": complete, "budget_s": self.budget_s,
                "elapsed_s": round(clock() - t0, 6), "objects": objects,
                "bytes": sum(v[1] for v in merged.values()),
                "tracked": tracked, "untracked": objects - tracked,
                "types": [{"type": k, "count": v[0], "size": v[1]} for k, v in ranked],
            },
            "containers": largest.report(),
        }

    def duplicates(self, top: int = 50, budget_s: Optional[float] = None) -> Dict[str, Any]:
        """Equal str/bytes values held as separate objects: count, size of one copy, and the
        bytes a de-duplication would save, ``(count - 1) * size``. Bounded memory: see
        ``_EXACT_DISTINCT``."""
        deadline = self.clock() + (self.budget_s if budget_s is None else budget_s)
        texts, self._texts = self._texts, {}
        total = sum(len(v) for v in texts.values())
        complete = self.candidates_complete
        rows = []
        done = 0
        for t, values in texts.items():
            groups, finished = self._groups(values, deadline, done, total)
            done += len(values)
            values.clear()
            complete = complete and finished
            getsizeof = sys.getsizeof
            for v, count in groups.items():
                if count > 1:
                    size = getsizeof(v)
                    rows.append(((count - 1) * size, count, size, t, v))
            groups.clear()
            if not finished:
                break
        rows.sort(key=lambda r: (-r[0], -r[1]))
        out = []
        for wasted, count, size, t, v in rows[:top]:
            preview = repr(v[:60])
            if len(preview) > 60:
                preview = preview[:57] + "..."
            out.append({"kind": "str" if t is str else "bytes", "preview": preview,
                        "count": count, "size": size, "wasted": wasted})
        return {"complete": complete, "wasted_bytes": sum(r[0] for r in rows), "values": out}

    def _groups(self, values: List[Any], deadline: float, done: int,
                total: int) -> Tuple[Dict[Any, int], bool]:
        """({value: copies}, finished): exactly, in one table, while the distinct values stay
        under _EXACT_DISTINCT; else again through the sketch. The loops that compare values
        are C code (exact str/bytes hash and compare natively, no Python code runs)."""
        clock = self.clock
        progress = self.progress
        n = len(values)
        step = CHECK_EVERY * 16
        groups: Dict[Any, int] = {}
        for start in range(0, n, step):
            _count_elements(groups, values[start:start + step])
            if progress is not None:
                progress("duplicates", done + min(n, start + step), total)
            if clock() > deadline:
                return groups, False
            if len(groups) > _EXACT_DISTINCT:
                groups.clear()
                return self._sketched(values, deadline, done, total)
        return groups, True

    def _sketched(self, values: List[Any], deadline: float, done: int,
                  total: int) -> Tuple[Dict[Any, int], bool]:
        """Count values per hash bucket (saturating at 2) in a 4 MB sketch, then group exactly
        only the values whose bucket holds two or more."""
        clock = self.clock
        progress = self.progress
        n = len(values)
        mask = _SKETCH_SLOTS - 1
        sketch = bytearray(_SKETCH_SLOTS)
        step = CHECK_EVERY * 16
        for start in range(0, n, step):
            for i in map(mask.__and__, map(hash, values[start:start + step])):
                c = sketch[i]
                if c < 2:
                    sketch[i] = c + 1
            if progress is not None:
                progress("duplicates", done + min(n, start + step) // 2, total)
            if clock() > deadline:
                return {}, False
        multi = sketch.translate(_MULTI)
        del sketch
        groups: Dict[Any, int] = {}
        for start in range(0, n, step):
            chunk = values[start:start + step]
            _count_elements(groups, compress(chunk, map(multi.__getitem__,
                                                        map(mask.__and__, map(hash, chunk)))))
            del chunk
            if progress is not None:
                progress("duplicates", done + (n + min(n, start + step)) // 2, total)
            if clock() > deadline:
                return groups, False
        return groups, True


def census(budget_s: float = 1.0, progress: Optional[Progress] = None,
           duplicates: bool = True) -> Dict[str, Any]:
    """The full census: ``{"census", "containers", "duplicates"}`` as in the snapshot document
    (``duplicates`` None when not asked for). The walk and the duplicates pass each get
    *budget_s*."""
    c = Census(budget_s=budget_s, progress=progress,
               min_duplicate_len=MIN_DUPLICATE_LEN if duplicates else sys.maxsize)
    out = c.run()
    out["duplicates"] = c.duplicates() if duplicates else None
    return out

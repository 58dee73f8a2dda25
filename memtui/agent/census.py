"""Census of live objects by type: counts and shallow sizes of what ``gc.get_objects()`` returns
plus the untracked objects those refer to (str, bytes, int, float, atomic-only dicts and tuples),
the largest containers, and equal str/bytes values held as many separate copies.

Speed and memory: one short Python loop body per distinct object, counting into a per-type
``[count, bytes]`` list keyed by the type object; the loop is bound by the memory latency of
touching each object once. Referents come a block of objects at a time
(``gc.get_referents(*block)``) and are filtered to the untracked ones by C builtins. Tracked
objects appear exactly once in ``gc.get_objects()``; an untracked one whose reference count says
a single reference points at it is met exactly once too; only the rest (interned strings, small
ints, values shared by several containers) need their ``id`` kept in a set.

Safety: nothing here calls an object's own ``__repr__``, ``__len__`` or ``__eq__``: lengths go
through the builtin base type's slot, descriptions are built from type names, and only exact
``str``/``bytes`` values are compared. ``__sizeof__`` is called (that is what getsizeof means);
one that raises counts as 0. Frozen objects (``gc.freeze()``) are invisible to
``gc.get_objects()``; the snapshot's gc section says how many there are.
"""
from __future__ import annotations

import gc
import sys
import time
from collections import deque
from itertools import compress, filterfalse
from typing import Any, Callable, Dict, List, Optional, Tuple

try:  # the C loop behind collections.Counter
    from _collections import _count_elements
except ImportError:  # pragma: no cover - Pythons without it
    def _count_elements(mapping: Dict[Any, int], iterable: Any) -> None:
        get = mapping.get
        for elem in iterable:
            mapping[elem] = get(elem, 0) + 1

Progress = Callable[[str, int, Optional[int]], None]

CHECK_EVERY = 4096  # tracked objects between two looks at the clock (and progress reports)
_SLICE = 16384  # referents filtered and counted at a time: bounds the temporary lists
# Shorter values are left out of the duplicates report: "" and one latin-1 character are
# singletons in CPython, never copies.
MIN_DUPLICATE_LEN = 2
MAX_DUPLICATE_CANDIDATES = 1_000_000  # values considered at most (a reference each: 8 MB)
# Up to this many distinct values are grouped exactly in one table (~40 bytes each); beyond, a
# 4 MB sketch of hash buckets first picks the values that may repeat.
_EXACT_DISTINCT = 300_000
_SKETCH_SLOTS = 1 << 22
_MULTI = bytes([0, 0] + [1] * 254)  # bucket count -> "two or more"
# Containers the largest-containers report measures, through the base type's own __len__ (a
# subclass's override is never called).
CONTAINER_BASES = (dict, list, tuple, set, frozenset, bytearray, deque)
# getsizeof() of those containers is at least 40 bytes (an empty tuple) plus one per item (a
# bytearray; the others take more): an object no bigger than 40 + the 20th-largest length found so
# far cannot be longer than it, so nearly all objects are never examined.
_MIN_OVERHEAD = 40
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python
_METHOD_DESCRIPTOR = type(object.__sizeof__)


def _single_reference_count() -> int:
    """What ``getrefcount`` reports, in Census.run's exact code shape, for an object exactly one
    reference points at (measured, not assumed: it differs across Python versions)."""
    holder = [object()]
    refs = list(holder)
    loose = list(filterfalse(gc.is_tracked, refs[0:_SLICE]))
    counts = list(map(sys.getrefcount, loose))
    return counts[0]  # the holder is its one reference


_SINGLE = _single_reference_count()


def type_name(t: type) -> str:
    """``module.qualname`` read through ``type``'s own descriptors (no metaclass code runs)."""
    try:
        qual = type.__dict__["__qualname__"].__get__(t)
    except Exception:
        qual = None
    if not isinstance(qual, str):
        qual = "?"
    try:
        module = type.__dict__["__module__"].__get__(t)
    except Exception:
        module = None
    return "%s.%s" % (module, qual) if isinstance(module, str) and module else qual


def _len_of(t: type) -> Optional[Callable[[Any], int]]:
    for base in CONTAINER_BASES:
        if issubclass(t, base):
            return base.__len__
    return None


def safe_repr(obj: Any, t: type, length: int) -> str:
    """A description built from type names and a length, never from the object's own repr:
    ``<builtins.dict len=3 {builtins.str: app.User, ...}>``, at most 80 characters."""
    sample = ""
    try:
        if length and t in (list, tuple, deque):
            sample = " [%s, ...]" % type_name(type(obj[0]))
        elif length and t is dict:
            key, value = next(iter(dict.items(obj)))
            sample = " {%s: %s, ...}" % (type_name(type(key)), type_name(type(value)))
        elif length and t in (set, frozenset):
            sample = " {%s, ...}" % type_name(type(next(iter(obj))))
    except Exception:  # emptied or resized meanwhile by another thread
        sample = ""
    text = "<%s len=%d%s>" % (type_name(t), length, sample)
    return text if len(text) <= 80 else text[:77] + "..."


class _Largest:
    """The *n* longest containers seen, as a small sorted list of (len, obj, type)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.items: List[Tuple[int, Any, type]] = []
        self.floor = 0 if n > 0 else sys.maxsize  # getsizeof() <= floor: cannot enter
        self._lens: Dict[type, Optional[Callable[[Any], int]]] = {}

    def offer(self, obj: Any, t: type) -> None:
        try:
            fn = self._lens[t]
        except KeyError:
            fn = self._lens[t] = _len_of(t)
        if fn is None:
            return
        try:
            length = fn(obj)
        except Exception:
            return
        items = self.items
        if len(items) >= self.n and length <= items[-1][0]:
            return
        items.append((length, obj, t))
        items.sort(key=lambda x: -x[0])
        del items[self.n:]
        if len(items) >= self.n:
            self.floor = items[-1][0] + _MIN_OVERHEAD

    def report(self) -> List[Dict[str, Any]]:
        out = []
        for length, obj, t in self.items:
            try:
                size = sys.getsizeof(obj)
            except Exception:
                size = 0
            out.append({"type": type_name(t), "len": length, "size": size,
                        "repr": safe_repr(obj, t, length)})
        self.items = []
        return out


def count_types(limit: Optional[int] = 50) -> Dict[str, Any]:
    """Counts only, of the objects gc tracks (the ``heap.types`` op): no sizes, no referents,
    so atomic-only dicts, strings and numbers are not in it."""
    t0 = time.perf_counter()
    objs = gc.get_objects()
    counts: Dict[type, int] = {}
    _count_elements(counts, map(type, objs))
    total = len(objs)
    del objs
    by_name: Dict[str, int] = {}
    for t, n in counts.items():
        name = type_name(t)
        by_name[name] = by_name.get(name, 0) + n
    counts.clear()
    ranked = sorted(by_name.items(), key=lambda kv: (-kv[1], kv[0]))
    if limit is not None:
        ranked = ranked[:limit]
    return {"types": [{"type": k, "count": v} for k, v in ranked], "objects": total,
            "distinct": len(by_name), "elapsed_s": round(time.perf_counter() - t0, 6)}


def _sizer(t: type, sample: Any, sizes: Dict[type, List[int]]
           ) -> Tuple[Callable[[Any], int], int, Callable[[int], None]]:
    """(sizeof, header, add) for objects of type *t*: ``sizeof(o) + header == getsizeof(o)``.
    For builtin types the C ``__sizeof__`` descriptor is called directly, with the GC header
    measured once: getsizeof would create a bound method per call, an allocation that costs
    ~1 us each when tracemalloc traces (a census of 1M untracked objects: seconds)."""
    values = sizes.get(t)
    if values is None:
        values = sizes[t] = []
    add = values.append
    if t is type or t.__flags__ & _HEAPTYPE:
        return sys.getsizeof, 0, add
    try:
        sizeof = t.__sizeof__
        if type(sizeof) is not _METHOD_DESCRIPTOR:
            return sys.getsizeof, 0, add
        return sizeof, sys.getsizeof(sample) - sizeof(sample), add
    except Exception:
        return sys.getsizeof, 0, add


def _fold(sizes: Dict[type, List[int]], stats: Dict[type, List[int]]) -> None:
    for t, values in sizes.items():
        if values:
            e = stats.get(t)
            if e is None:
                stats[t] = [len(values), sum(values)]
            else:
                e[0] += len(values)
                e[1] += sum(values)
            values.clear()


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
        objs = gc.get_objects()
        # Everything the walk allocates from here on is not in objs, so it is never counted.
        total = len(objs)
        strs: List[Any] = []
        raw: List[Any] = []
        self._texts = {str: strs, bytes: raw}
        str_add = strs.append
        max_texts = self.max_candidates
        min_len = self.min_duplicate_len
        # Sizes are appended to a list per type and folded into [count, bytes] after each slice:
        # one call per object, and sizes under 257 bytes are the cached small ints. See _sizer.
        stats: Dict[type, List[int]] = {}  # type -> [count, bytes]
        sizes: Dict[type, List[int]] = {}
        sizers: Dict[type, Tuple[Callable[[Any], int], int, Callable[[int], None]]] = {}
        get = sizers.get
        get_referents = gc.get_referents
        is_tracked = gc.is_tracked
        getrefcount = sys.getrefcount
        single = _SINGLE
        seen: set = set()  # ids of counted untracked objects that more than one reference
        seen_add = seen.add  # points at; the others are met exactly once
        largest = _Largest(self.containers)
        walk_types = (tuple, dict)  # untracked containers: their referents are untracked too
        progress = self.progress
        complete = True
        tracked = 0
        for start in range(0, total, CHECK_EVERY):
            block = objs[start:start + CHECK_EVERY]
            floor = largest.floor
            for o in block:
                t = type(o)
                r = get(t)
                if r is None:
                    r = sizers[t] = _sizer(t, o, sizes)
                sizeof, header, add = r
                try:
                    s = sizeof(o) + header
                except Exception:  # a broken __sizeof__ of an extension or user type
                    s = 0
                add(s)
                if s > floor:
                    largest.offer(o, t)
                    floor = largest.floor
            tracked += len(block)
            _fold(sizes, stats)
            # Untracked referents, a slice at a time: one container may refer to millions.
            stack = [block]
            del block
            while stack and complete:
                parents = stack.pop()
                for i in range(0, len(parents), CHECK_EVERY):
                    refs = get_referents(*parents[i:i + CHECK_EVERY])
                    for j in range(0, len(refs), _SLICE):
                        loose = list(filterfalse(is_tracked, refs[j:j + _SLICE]))
                        if not loose:
                            continue
                        counts = list(map(getrefcount, loose))
                        pending = []
                        floor = largest.floor
                        for o, rc in zip(loose, counts):
                            if rc > single:  # else one reference points at it: met only once
                                k = id(o)
                                if k in seen:
                                    continue
                                seen_add(k)
                            t = type(o)
                            r = get(t)
                            if r is None:
                                r = sizers[t] = _sizer(t, o, sizes)
                            sizeof, header, add = r
                            try:
                                s = sizeof(o) + header
                            except Exception:
                                s = 0
                            add(s)
                            if t is str:
                                if len(o) >= min_len:
                                    str_add(o)
                            elif t in walk_types:
                                pending.append(o)
                            elif t is bytes and len(o) >= min_len:
                                raw.append(o)
                            if s > floor:
                                largest.offer(o, t)
                                floor = largest.floor
                        del loose, counts
                        _fold(sizes, stats)
                        if len(strs) + len(raw) > max_texts:
                            self._trim(max_texts)
                            min_len = sys.maxsize  # no room for more
                        if pending:
                            stack.append(pending)
                        del pending
                        if clock() > deadline:
                            complete = False
                            break
                    del refs
                    if not complete:
                        break
                del parents
            stack = []
            done = min(total, start + CHECK_EVERY)
            if progress is not None:
                progress("census", done, total)
            if not complete or (clock() > deadline and done < total):
                complete = False
                break
        del objs, seen
        _fold(sizes, stats)
        sizes.clear()
        sizers.clear()
        merged: Dict[str, List[int]] = {}  # distinct type objects may share a name
        for t, (n, size) in stats.items():
            name = type_name(t)
            m = merged.get(name)
            if m is None:
                merged[name] = [n, size]
            else:
                m[0] += n
                m[1] += size
        stats.clear()
        ranked = sorted(merged.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
        objects = sum(v[0] for v in merged.values())
        if not complete:
            self.candidates_complete = False
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

    def _trim(self, limit: int) -> None:
        self.candidates_complete = False
        for values in self._texts.values():
            keep = max(0, min(len(values), limit))
            del values[keep:]
            limit -= keep

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

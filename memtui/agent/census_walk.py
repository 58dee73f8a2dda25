"""The heap walk behind census.py: how live objects are gathered, sized and de-duplicated without
running any Python code of theirs (or of their classes' metaclasses), in bounded extra memory.

Gathering (``gather``): ``gc.get_objects()`` is called inside one C call (``any`` over a chain of
itertools) that also takes every exact tuple out of its result, keeps only numbers about each (its
length, how many slots it really fills) and a flat list of the items of the complete ones, then
drops the tuples and the list. No bytecode runs in between, so no other thread runs while the
census holds a tuple: ``tuple(iterable)`` in a host thread grows its tuple with
``_PyTuple_Resize``, which fails with ``SystemError: bad argument to internal function`` when
anything else holds a reference to it, and a tuple still being built has empty (NULL) slots that
crash any code indexing them. Tuples with fewer filled slots than their length are being built:
they are skipped, not counted. What the walk holds afterwards (no exact tuple: untracked ones are
complete and shared) is safe to hold for as long as it takes. ``count_types`` counts in one such
C call too. Residual hazard: a garbage collection that an allocation inside that C call triggers
may run a ``__del__`` or weakref callback, and with it another thread, while the call holds the
list; a host tuple being resized then fails as before. Rare: the call allocates almost nothing.

Sizes (``sizer``): the first C ``__sizeof__`` in the type's MRO plus the GC header and
pre-header, read through ``type``'s own descriptors; a Python ``__sizeof__`` override is never
called (it is user code: slow, or failing, or lying), so such objects count at the size of their C
layout and the time budget holds. Types are keyed by ``id`` (a metaclass may define ``__hash__``
or ``__eq__``) and kept alive in a side table for naming.

Seen: an untracked object that more than one reference points at may be met several times; it
is counted once, marked in a paged bitmap over addresses (one bit per 16 bytes: objects are at
least 16 bytes long and never overlap, so ``id >> 4`` is unique): 1/128 of the address range the
marked objects span; a bounded set caches the widely shared ones (interned keys) found again.

Slicing: containers are expanded a batch or a slice at a time (at most 64k items per slice, 4096
containers of at most 2 KiB per ``gc.get_referents`` call): exact lists, untracked tuples, dicts,
sets and deques larger than 512 KiB are read in slices of their items (dicts: values, then the
keys that are not str, as ``gc.get_referents`` sees a str-keyed dict); other large objects
(subclasses, extension types) through one ``gc.get_referents`` each, a temporary list of 8 bytes
per referent. The items of all tracked tuples are held as one flat list (8 bytes each).
"""
from __future__ import annotations

import gc
import sys
from collections import deque
from itertools import chain, compress, count, filterfalse, islice, repeat
from operator import call, eq, getitem, is_, is_not, lt, not_
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

CHECK_EVERY = 4096  # tracked objects between two looks at the clock; small containers per batch
SLICE = 16384  # untracked referents filtered and counted at a time
ITEMS = 65536  # items per slice of a large container
SMALL = 2048  # bytes: larger containers are expanded one at a time (at most ~256 referents here)
BIG = ITEMS * 8  # bytes: larger exact containers are read in slices of ITEMS
HOT = 16  # references: a shared object with more, found again, goes to the bounded set
HOT_MAX = 1 << 17
_PAGE = bytearray  # a bitmap page: 8192 bytes, 64k bits, 1 MiB of addresses
_BITS = tuple(1 << i for i in range(8))
# getsizeof() of a container is at least 40 bytes (an empty tuple) plus one per item: an object
# no bigger than 40 + the n-th largest length found so far cannot be longer than it.
MIN_OVERHEAD = 40
CONTAINER_BASES = (dict, list, tuple, set, frozenset, bytearray, deque)
_FIRST = slice(0, 1)

_FLAGS = type.__dict__["__flags__"].__get__
_MRO = type.__dict__["__mro__"].__get__
_NAMESPACE = type.__dict__["__dict__"].__get__
_QUALNAME = type.__dict__["__qualname__"].__get__
_MODULE = type.__dict__["__module__"].__get__
_SUBCLASSES = type.__dict__["__subclasses__"]
_METHOD_DESCRIPTOR = type(object.__sizeof__)
_HAVE_GC = 1 << 14


def _headers() -> Tuple[int, int, int]:
    """(GC header, pre-header, the type flags that carry one): what sys.getsizeof adds."""
    gc_head = sys.getsizeof([]) - list.__sizeof__([])

    class Probe:
        pass

    p = Probe()
    pre = sys.getsizeof(p) - object.__sizeof__(p) - gc_head
    return gc_head, pre, (_FLAGS(Probe) & 0x18) if pre else 0


GC_HEAD, _PRE, _PRE_FLAGS = _headers()
TUPLE_BASE = tuple.__basicsize__ + GC_HEAD  # getsizeof(t) == TUPLE_BASE + TUPLE_ITEM * len(t)
TUPLE_ITEM = tuple.__itemsize__


def type_name(t: type) -> str:
    """``module.qualname`` read through ``type``'s own descriptors (no metaclass code runs)."""
    try:
        qual = _QUALNAME(t)
    except Exception:
        qual = None
    qual = str.__str__(qual) if issubclass(type(qual), str) else "?"
    try:
        module = _MODULE(t)
    except Exception:
        module = None
    if issubclass(type(module), str) and module:
        return "%s.%s" % (str.__str__(module), qual)
    return qual


def sizer(t: type) -> Tuple[Callable[[Any], int], int]:
    """(sizeof, header) with ``sizeof(o) + header == sys.getsizeof(o)`` unless a Python
    ``__sizeof__`` overrides the C one: then the C one beneath it, never the override."""
    flags = _FLAGS(t)
    header = (GC_HEAD if flags & _HAVE_GC else 0) + (_PRE if flags & _PRE_FLAGS else 0)
    mro = _MRO(t) or (object,)
    for c in mro:
        f = _NAMESPACE(c).get("__sizeof__")
        if type(f) is _METHOD_DESCRIPTOR:
            owner = f.__objclass__
            if any(owner is m for m in mro):
                return f, header
    return object.__sizeof__, header


def classes() -> Dict[int, type]:
    """Every live class by id, through ``type.__subclasses__`` from ``object``: holding them keeps
    the ids of the types counted next unambiguous."""
    out: Dict[int, type] = {}
    stack = [object]
    while stack:
        c = stack.pop()
        if id(c) not in out:
            out[id(c)] = c
            try:
                stack.extend(_SUBCLASSES(c))
            except Exception:
                pass
    return out


def objects() -> Iterator[Any]:
    """``gc.get_objects()`` made lazily: the list is built when first pulled, inside the C call
    that consumes this, and freed as soon as it is exhausted (it never holds itself)."""
    return chain.from_iterable(map(gc.get_objects, (None,)))


def gather() -> Tuple[List[Any], List[int], List[int], List[Any]]:
    """(others, lens, filled, flat): the tracked objects that are not exact tuples; for each exact
    tuple its length and how many slots it fills; the items of the complete ones (tuple by tuple,
    each one's items last to first, as gc.get_referents gives them). One C call (``any`` over
    itertools; every step yields None) lists the objects, splits them, reads the tuples and drops
    them and the list: no other thread runs meanwhile, and nothing left holds a tuple. The caller
    must ``clear()`` others when done: it may hold the iterators that refer back to it."""
    holder: List[Any] = []  # the first of this call's objects: they come after it in the list
    rest: List[Any] = []
    tups: List[Any] = []
    lens: List[int] = []
    filled: List[int] = []
    flat: List[Any] = []
    objs1, objs2 = chain.from_iterable(holder), chain.from_iterable(holder)  # over one list
    steps = chain(
        map(holder.append, map(gc.get_objects, (None,))),
        map(call, map(getitem, repeat((rest.append, tups.append)),
                      map(is_, map(type, objs1), repeat(tuple))), objs2),
        map(lens.append, map(len, iter(tups))),
        map(filled.append, map(len, map(gc.get_referents, iter(tups)))),
        map(flat.extend, compress(map(gc.get_referents, iter(tups)),
                                  map(eq, iter(lens), iter(filled)))),
        compress(chain(objs1, objs2), repeat(False)),  # both at their end: they drop the list
        map(list.clear, (tups, holder)))
    end: List[Any] = []  # the last of them
    try:
        if any(steps):  # pragma: no cover - every step returns None
            raise RuntimeError("census: a gathering step returned a value")
    finally:
        tups.clear()
        holder.clear()
    _drop(rest, holder, end, (holder, rest, tups, lens, filled, flat, end))
    return rest, lens, filled, flat


def _index(objs: List[Any], x: Any) -> int:
    """The position of *x* in objs by identity (never ``==``), or -1."""
    return next(compress(count(), map(is_, objs, repeat(x))), -1)


def _drop(rest: List[Any], first: Any, last: Any, ours: Tuple[Any, ...]) -> None:
    """Removes this module's own objects from rest: everything from *first* to *last* (made in
    that order just before the list, they sit together near its start, among the youngest
    objects); if a collection moved some of them apart meanwhile, at least the lists."""
    i, j = _index(rest, first), _index(rest, last)
    if 0 <= i < j:
        del rest[i:j + 1]
        return
    for x in ours:
        i = _index(rest, x)
        if i >= 0:
            del rest[i]


def _untracked(refs: Any, j: int) -> Tuple[List[Any], List[int]]:
    """The untracked objects among refs[j:j+SLICE] and their reference counts. The walk and
    _SINGLE share this code shape, so a count of _SINGLE means one reference besides refs."""
    lo = list(filterfalse(gc.is_tracked, refs[j:j + SLICE]))
    return lo, list(map(sys.getrefcount, lo))


def _single_reference_count() -> int:
    holder = [object()]  # its one reference
    return _untracked(list(holder), 0)[1][0]


_SINGLE = _single_reference_count()


def _len_of(t: type) -> Optional[Callable[[Any], int]]:
    for base in CONTAINER_BASES:
        if issubclass(t, base):
            return base.__len__
    return None


def describe(t: type, length: int, sample: str = "") -> str:
    text = "<%s len=%d%s>" % (type_name(t), length, sample)
    return text if len(text) <= 80 else text[:77] + "..."


def _first(obj: Any, t: type, length: int) -> List[Any]:
    """At most one item of an exact list, tuple or deque, never by indexing the container: a
    tuple still being built has NULL slots that gc.get_referents skips and indexing crashes on."""
    if length <= ITEMS:  # gc visits a list's or a tuple's items last to first
        return gc.get_referents(obj)[:1] if t is deque else gc.get_referents(obj)[-1:]
    if t is list:
        return list.__getitem__(obj, _FIRST)  # a list's slots are never NULL to Python code
    if t is tuple and not gc.is_tracked(obj):
        return list(tuple.__getitem__(obj, _FIRST))  # gc untracks only complete tuples
    if t is deque:
        return list(islice(deque.__iter__(obj), 1))
    return []


def safe_repr(obj: Any, t: type, length: int) -> str:
    """A description built from type names and a length, never from the object's own repr:
    ``<builtins.dict len=3 {builtins.str: app.User, ...}>``, at most 80 characters."""
    sample = ""
    try:
        if length and (t is list or t is tuple or t is deque):
            first = _first(obj, t, length)
            if first:
                sample = " [%s, ...]" % type_name(type(first[0]))
        elif length and t is dict:
            pair = next(iter(dict.items(obj)), None)
            if pair is not None:
                sample = " {%s: %s, ...}" % (type_name(type(pair[0])), type_name(type(pair[1])))
        elif length and (t is set or t is frozenset):
            first = list(islice(iter(obj), 1))
            if first:
                sample = " {%s, ...}" % type_name(type(first[0]))
    except Exception:  # emptied or resized meanwhile by another thread
        sample = ""
    return describe(t, length, sample)


class Largest:
    """The *n* longest containers seen, as a small sorted list of (len, type name, size, repr),
    described when they enter: it keeps no reference to them."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.items: List[Tuple[int, str, int, str]] = []
        self.floor = 0 if n > 0 else sys.maxsize  # getsizeof() <= floor: cannot enter
        self._lens: Dict[int, Tuple[type, Optional[Callable[[Any], int]]]] = {}

    def offer(self, obj: Any, t: type, size: int) -> None:
        e = self._lens.get(id(t))
        if e is None:
            e = self._lens[id(t)] = (t, _len_of(t))
        if e[1] is not None:
            try:
                length = e[1](obj)
            except Exception:
                return
            if self.enters(length):
                self.add(length, t, size, safe_repr(obj, t, length))

    def enters(self, length: int) -> bool:
        return self.n > 0 and (len(self.items) < self.n or length > self.items[-1][0])

    def add(self, length: int, t: type, size: int, text: str) -> None:
        items = self.items
        items.append((length, type_name(t), size, text))
        items.sort(key=lambda x: -x[0])
        del items[self.n:]
        if len(items) >= self.n:
            self.floor = items[-1][0] + MIN_OVERHEAD

    def report(self) -> List[Dict[str, Any]]:
        return [{"type": name, "len": n, "size": size, "repr": text}
                for n, name, size, text in self.items]


class Walk:
    """Counts into ``stats`` ({id(type): [count, bytes]}; ``types`` names them) the objects it is
    given and every untracked object reachable from them through untracked containers."""

    def __init__(self, clock: Callable[[], float], deadline: float, largest: Largest,
                 strs: List[Any], raw: List[Any], min_len: int, max_texts: int) -> None:
        self.clock = clock
        self.deadline = deadline
        self.largest = largest
        self.strs, self.raw = strs, raw
        self.min_len = min_len
        self.max_texts = max_texts
        self.texts_complete = True
        self.types: Dict[int, type] = {}
        self.sizers: Dict[int, Tuple[Callable[[Any], int], int, Callable[[int], None]]] = {}
        self.sizes: Dict[int, List[int]] = {}  # sizes met since the last fold, by type
        self.stats: Dict[int, List[int]] = {}
        self.pages: Dict[int, bytearray] = {}  # the seen bitmap, by MiB of address
        self.hot: set = set()
        self.pending: List[Any] = []  # untracked tuples and dicts up to SMALL bytes, to expand
        self.heavy: List[Tuple[Any, type, int]] = []  # larger ones, to expand one at a time
        for t in (str, int, float):
            self.register(t)
        sizeof, header = sizer(float)
        self.float_size = sizeof(0.0) + header  # fixed

    def register(self, t: type) -> Tuple[Callable[[Any], int], int, Callable[[int], None]]:
        k = id(t)
        sizeof, header = sizer(t)
        values = self.sizes[k] = []
        self.types[k] = t
        r = self.sizers[k] = (sizeof, header, values.append)
        return r

    def fold(self) -> None:
        stats = self.stats
        for k, values in self.sizes.items():
            if values:
                e = stats.get(k)
                if e is None:
                    stats[k] = [len(values), sum(values)]
                else:
                    e[0] += len(values)
                    e[1] += sum(values)
                values.clear()

    def add(self, t: type, count: int, size: int) -> None:
        if count <= 0:
            return
        if id(t) not in self.sizers:
            self.register(t)
        e = self.stats.setdefault(id(t), [0, 0])
        e[0] += count
        e[1] += size

    # -- tracked objects -----------------------------------------------------------------------
    def tuples(self, lens: List[int], filled: List[int]) -> int:
        """Counts the complete tracked tuples (their sizes follow from their lengths)."""
        good = list(compress(lens, map(eq, lens, filled)))
        self.add(tuple, len(good), TUPLE_BASE * len(good) + TUPLE_ITEM * sum(good))
        return len(good)

    def largest_tuples(self, lens: List[int], filled: List[int], flat: List[Any]) -> None:
        """Offers the tuples that can enter the largest-containers report (the floor is known
        by now, so only those few are looked at); their first item comes from flat."""
        largest = self.largest
        if largest.n <= 0:
            return
        shortest = max(0, (largest.floor - TUPLE_BASE) // TUPLE_ITEM)
        good = list(compress(lens, map(eq, lens, filled)))
        cands = list(compress(range(len(good)), map(lt, repeat(shortest), good)))
        offset = prev = 0
        for i in cands:
            offset += sum(good[prev:i])
            prev = i
            n = good[i]
            if largest.enters(n):
                first = flat[offset + n - 1] if n else None  # items come last to first
                sample = " [%s, ...]" % type_name(type(first)) if n else ""
                largest.add(n, tuple, TUPLE_BASE + TUPLE_ITEM * n, describe(tuple, n, sample))

    def block(self, objs: List[Any]) -> bool:
        """Sizes tracked objects, then expands them; False when out of time."""
        get = self.sizers.get
        largest = self.largest
        floor = largest.floor
        cut = min(floor, SMALL)
        heavy = []
        for o in objs:
            t = type(o)
            r = get(id(t))
            if r is None:
                r = self.register(t)
            sizeof, header, add = r
            try:
                s = sizeof(o) + header
            except Exception:  # a broken C __sizeof__ of an extension type
                s = 0
            add(s)
            if s > cut:
                if s > floor:
                    largest.offer(o, t, s)
                    floor = largest.floor
                if s > SMALL:
                    heavy.append((o, t, s))
                cut = min(floor, SMALL)
        self.fold()
        work: List[Iterator[Any]] = []
        if heavy:
            skip = set(id(h[0]) for h in heavy)
            objs = list(compress(objs, map(not_, map(skip.__contains__, map(id, objs)))))
            work.extend(map(self._slices, reversed(heavy)))
        work.append(self._batches(objs))
        del objs, heavy
        return self.run(work)

    # -- referents -------------------------------------------------------------------------------
    def run(self, work: List[Iterator[Any]]) -> bool:
        """Walks a stack of iterators of referent lists (depth first); False when out of time."""
        while work:
            refs = next(work[-1], None)
            if refs is None:
                work.pop()
                continue
            if not self.loose(refs):
                return False
            del refs
            if self.heavy:
                heavy, self.heavy = self.heavy, []
                work.extend(map(self._slices, reversed(heavy)))
            if self.pending:
                pending, self.pending = self.pending, []
                work.append(self._batches(pending))
        return True

    @staticmethod
    def _batches(objs: List[Any]) -> Iterator[List[Any]]:
        get_referents = gc.get_referents
        for i in range(0, len(objs), CHECK_EVERY):
            yield get_referents(*objs[i:i + CHECK_EVERY])

    @staticmethod
    def _slices(item: Tuple[Any, type, int]) -> Iterator[List[Any]]:
        """The referents of one large object, in lists of at most ITEMS each when it is an exact
        container (each list the only one holding its items: reference counts stay exact)."""
        o, t, s = item
        try:
            if s <= BIG:
                yield gc.get_referents(o)
            elif t is list:
                i = 0
                while True:
                    refs = list.__getitem__(o, slice(i, i + ITEMS))
                    if not refs:
                        return
                    yield refs
                    i += ITEMS
            elif t is tuple and not gc.is_tracked(o):  # gc untracks only complete tuples
                for i in range(0, tuple.__len__(o), ITEMS):
                    yield list(tuple.__getitem__(o, slice(i, i + ITEMS)))
            elif t is dict:
                values = iter(dict.values(o))
                while True:
                    refs = list(islice(values, ITEMS))
                    if not refs:
                        break
                    yield refs
                keys = iter(dict.keys(o))
                while True:
                    ks = list(islice(keys, ITEMS))
                    if not ks:
                        return
                    refs = list(compress(ks, map(is_not, map(type, ks), repeat(str))))
                    del ks
                    yield refs
            elif t is set or t is frozenset or t is deque:
                items = iter(o)
                while True:
                    refs = list(islice(items, ITEMS))
                    if not refs:
                        return
                    yield refs
            else:
                yield gc.get_referents(o)
        except RuntimeError:  # changed size during iteration: the rest of it is not counted
            return

    def loose(self, refs: Any) -> bool:
        """Counts the untracked objects in refs not met before; queues the untracked tuples and
        dicts among them for expansion. False when out of time."""
        get = self.sizers.get
        register = self.register
        largest = self.largest
        single = _SINGLE
        pages = self.pages
        pages_get = pages.get
        hot = self.hot
        hot_add = hot.add
        bits = _BITS
        strs, raw = self.strs, self.raw
        pending_add = self.pending.append
        heavy_add = self.heavy.append
        min_len = self.min_len
        str_sizeof, str_header, str_add = self.sizers[id(str)]
        int_sizeof, int_header, int_add = self.sizers[id(int)]
        float_add = self.sizers[id(float)][2]
        float_size = self.float_size
        for j in range(0, len(refs), SLICE):
            lo, counts = _untracked(refs, j)
            floor = largest.floor
            for o, rc in zip(lo, counts):
                if rc > single:  # else one reference points at it: met only once
                    k = id(o)
                    if k in hot:
                        continue
                    p = k >> 20
                    pg = pages_get(p)
                    if pg is None:
                        pg = pages[p] = _PAGE(8192)
                    b = (k >> 7) & 8191
                    m = bits[(k >> 4) & 7]
                    v = pg[b]
                    if v & m:
                        if rc > HOT and len(hot) < HOT_MAX:
                            hot_add(k)
                        continue
                    pg[b] = v | m
                t = type(o)
                if t is str:  # the commonest types first, without a lookup
                    str_add(str_sizeof(o) + str_header)
                    if len(o) >= min_len:
                        strs.append(o)
                    continue  # not a container: never among the largest
                elif t is int:
                    int_add(int_sizeof(o) + int_header)
                    continue
                elif t is float:
                    float_add(float_size)
                    continue
                else:
                    r = get(id(t))
                    if r is None:
                        r = register(t)
                    sizeof, header, add = r
                    try:
                        s = sizeof(o) + header
                    except Exception:
                        s = 0
                    add(s)
                    if t is dict or t is tuple:
                        if s > SMALL:
                            heavy_add((o, t, s))
                        else:
                            pending_add(o)
                    elif t is bytes and len(o) >= min_len:
                        raw.append(o)
                if s > floor:
                    largest.offer(o, t, s)
                    floor = largest.floor
            del lo, counts
            self.fold()
            if len(strs) + len(raw) > self.max_texts:
                self.trim()
                min_len = self.min_len
            if self.clock() > self.deadline:
                return False
        return True

    def trim(self) -> None:
        self.texts_complete = False
        keep = max(0, min(len(self.strs), self.max_texts))
        del self.strs[keep:]
        del self.raw[max(0, self.max_texts - keep):]
        self.min_len = sys.maxsize  # no room for more

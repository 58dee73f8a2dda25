"""Who keeps objects of a type alive: for a few sample instances, the shortest chain of referrers
up to a module global, a class attribute or a frame (objgraph's back-references, as text).

Breadth-first backwards, one ``gc.get_referrers`` heap scan per level for the whole frontier
(not one per object), a capped frontier, and a time budget checked between scans, every 1024
referrers and every 65536 referents: the longest stretch without a look at the clock is one C
pass over the heap, about 0.1 s per million objects. Nothing here calls user code: names come
from type slots and C-level descriptors, reprs are a type name plus a length or an id, and
``isinstance`` (which may consult a user ``__class__``) is never used on a heap object. One side
effect, what a debugger has too: naming an attribute of an instance whose attributes are stored
inline (3.11+) makes CPython build its ``__dict__`` (only for the few objects on a chain).

The host's threads run on meanwhile, and two CPython details shape the code:

* A tuple being built by ``tuple(iterable)`` (or ``f(*iterable)``) in another thread is already
  in the gc lists, with empty slots, and is resized in place as it fills, which CPython refuses
  (SystemError, in *that* thread) while anything else holds a reference to it. The list that
  ``gc.get_objects`` or ``gc.get_referrers`` returns is such a reference, and another thread gets
  the GIL whenever this one runs bytecode. So the heap is filtered by itertools pipelines that
  call ``gc.get_objects``/``gc.get_referrers`` themselves and run entirely in C (no bytecode, so
  no other thread, until the full list is gone); exact tuples with an empty slot (fewer referents
  than their length) are left out; and tuples are never indexed or iterated (an empty slot is a
  NULL), only their referents read. What remains: a tuple whose slots are all filled at the very
  moment it is about to grow looks finished, and is kept if the search wants it (a sample, a
  holder of untracked instances, a referrer of the frontier).
* A running function's locals are not visible to gc (its frame does not traverse them). From
  3.13 ``frame.f_locals`` is a write-through proxy, read here, so an object only a local variable
  holds ends its chain at that frame. Up to 3.12 reading ``f_locals`` stores a snapshot dict in
  the frame that keeps every local of that moment alive until the function returns, whatever the
  function does with them; so running frames are not read there, and a chain only a running
  function's local holds ends "unreachable". Frames gc does see (finished ones a traceback keeps)
  end chains as before.
"""
from __future__ import annotations

import gc
import os
import sys
import time
import types
from collections import deque
from itertools import chain as _chain
from itertools import compress, count, islice, repeat, starmap, tee
from operator import and_, eq, is_, itemgetter, not_
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from .census import type_name  # one naming for the census and for the types asked about

_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep  # memtui/agent/: the search's frames
_TYPE_DICT = type.__dict__["__dict__"]
_TYPE_MRO = type.__dict__["__mro__"]
_MODULE_DICT = types.ModuleType.__dict__["__dict__"]
_FUNC_QUALNAME = types.FunctionType.__dict__["__qualname__"]
_SIZED = (dict, list, tuple, set, frozenset, deque, str, bytes, bytearray)
_NOT_INSTANCES = (dict, list, tuple, set, frozenset, deque, type, types.ModuleType,
                  types.FrameType, types.FunctionType, types.CellType, types.MethodType)
MAX_FRONTIER = 48  # gc.get_referrers compares every reference in the heap against each target
_BLOCK = 1 << 16  # referents filtered (in C) between two looks at the clock
_TUPLE_ID = id(tuple)
_CONTAINER_IDS = {id(list), id(set), id(dict)}
_SECOND = itemgetter(1)
# 3.13+: f_locals is a proxy onto the running frame (PEP 667); before, reading it leaves a snapshot
_PROXY_LOCALS = sys.version_info >= (3, 13)


def _tuple_order() -> bool:
    """Whether gc lists a tuple's items last to first (CPython's tupletraverse does)."""
    first, last = object(), object()
    return gc.get_referents((first, last))[0] is last


_TUPLE_REVERSED = _tuple_order()


# -- C-only pipelines ------------------------------------------------------------------------------
# Each builds a lazy iterator; the lambdas run while a pipeline is built, never while it is
# iterated, so a list(...) or .extend(...) over one runs no bytecode and lets no other thread run.
# A "keys" function takes a factory of fresh iterators over the same objects and returns one truth
# value per object. Copies come from tee; the heap list itself is shared by every copy (one tee
# item), never buffered object by object: a tee created before gc.get_objects() is in its list,
# and buffering itself would make a cycle that keeps the whole heap alive until a collection.
Fresh = Callable[[], Iterator[Any]]
Keys = Callable[[Fresh], Iterable[Any]]


def _copies(stream: Iterable[Any]) -> Fresh:
    """A factory of independent iterators over *stream*, each from its start."""
    return tee(stream, 1)[0].__copy__


def _select(fresh: Fresh, keys: Keys) -> Iterator[Any]:
    return compress(fresh(), keys(fresh))


def _type_ids(stream: Iterable[Any]) -> Iterator[int]:
    return map(id, map(type, stream))


def _of_types(ids: Set[int]) -> Keys:
    return lambda fresh: map(ids.__contains__, _type_ids(fresh()))


def _both(first: Keys, second: Keys) -> Keys:
    return lambda fresh: map(and_, first(fresh), second(fresh))


def _exact_tuple(fresh: Fresh) -> Iterable[bool]:
    return map(_TUPLE_ID.__eq__, _type_ids(fresh()))


def _not_exact_tuple(fresh: Fresh) -> Iterable[bool]:
    return map(_TUPLE_ID.__ne__, _type_ids(fresh()))


def _filled(fresh: Fresh) -> Iterable[bool]:
    """For exact tuples: whether every slot holds an object (one being built has empty ones)."""
    return map(eq, map(len, fresh()), map(len, map(gc.get_referents, fresh())))


def _no_half_built(stream: Iterable[Any]) -> Iterator[Any]:
    """*stream* without the exact tuples that have an empty slot: the others first, then the
    tuples (buffered by tee meanwhile: for short streams, such as a frontier's referrers)."""
    fresh = _copies(stream)
    return _chain(_select(fresh, _not_exact_tuple),
                  _select(_copies(_select(fresh, _exact_tuple)), _filled))


def _tracked(into: List[Any], types: Optional[Set[int]], exclude: Set[int]) -> int:
    """Append to *into* the objects gc tracks whose type's id is in *types* (None: all), leaving
    out exact tuples still being built and, when lists, sets or dicts are asked for, the objects
    whose ids are in *exclude* (the caller's containers, which gc lists too); return how many
    objects gc listed. ``gc.get_objects()``
    runs inside the pipeline, whose last stage empties its list: the list never lives while
    bytecode runs. One C pass over the heap (two with tuples), so not interruptible: about
    0.1 s per million objects."""
    start = len(into)
    sizes: List[int] = []
    lists = _copies(map(gc.get_objects, (None,)))

    def heap() -> Iterator[Any]:
        return _chain.from_iterable(lists())

    stages: List[Iterator[Any]] = []
    if types is None:
        stages.append(_select(heap, _not_exact_tuple))
    elif types - {_TUPLE_ID}:
        stages.append(_select(heap, _of_types(types - {_TUPLE_ID})))
    if types is None or _TUPLE_ID in types:
        stages.append(_select(_copies(_select(heap, _exact_tuple)), _filled))
    stages.append(filter(None, map(sizes.append, map(len, lists()))))
    stages.append(filter(None, map(list.clear, lists())))
    try:
        into.extend(_chain(*stages))
    except BaseException:
        for objs in lists():
            objs.clear()
        raise
    if types is None or not types.isdisjoint(_CONTAINER_IDS):  # ours are lists, sets, dicts
        mine = set(exclude)
        mine.update((id(into), id(sizes), id(stages), id(mine)))
        drop = list(compress(count(start), map(mine.__contains__,
                                               map(id, islice(into, start, None)))))
        for i in reversed(drop):
            del into[i]
    return sizes[0] if sizes else 0


def _all_classes() -> List[type]:
    """Every class alive, through ``type.__subclasses__`` from ``object`` (no heap scan)."""
    out: List[type] = []
    seen: Set[int] = set()
    stack: List[type] = [object]
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        out.append(c)
        try:
            stack.extend(type.__subclasses__(c))
        except Exception:
            pass
    return out


# -- naming ----------------------------------------------------------------------------------------
def _module_name(m: Any) -> str:
    try:
        name = _MODULE_DICT.__get__(m).get("__name__")
    except Exception:
        name = None
    return name if type(name) is str else "?"


def describe(obj: Any) -> str:
    """A short, safe description: never the object's own __repr__."""
    t = type(obj)
    if issubclass(t, types.ModuleType):
        return "module %s" % _module_name(obj)
    if issubclass(t, type):
        return "class %s" % type_name(obj)
    if t is types.FunctionType:
        qual = _FUNC_QUALNAME.__get__(obj)
        return "function %s" % (qual if type(qual) is str else "?")
    if t is types.FrameType:
        code = obj.f_code
        return "frame %s at %s:%d" % (code.co_name, os.path.basename(code.co_filename),
                                      obj.f_lineno or 0)
    for base in _SIZED:
        if issubclass(t, base):
            return "%s len=%d" % (type_name(t), base.__len__(obj))
    return "%s at 0x%x" % (type_name(t), id(obj))


def _key(k: Any) -> str:
    t = type(k)
    if issubclass(t, str):
        text = str.__repr__(k)
    elif t is int:
        text = int.__repr__(k)
    elif t in (float, bool, type(None)):
        text = repr(k)
    elif issubclass(t, bytes):
        text = bytes.__repr__(k)
    else:
        text = describe(k)
    return text if len(text) <= 60 else text[:57] + "..."


def _dict_via(d: dict, child: Any, bare: bool) -> Optional[str]:
    try:
        items = _copies(iter(dict.items(d)))
        for k, _ in _select(items, lambda fresh: map(is_, map(_SECOND, fresh()), repeat(child))):
            return k if bare and type(k) is str else "[%s]" % _key(k)
        if any(map(is_, dict.keys(d), repeat(child))):
            return "key"
    except RuntimeError:  # another thread resized it meanwhile: no name, the chain stands
        pass
    return None


def _position(items: Iterable[Any], child: Any) -> Optional[int]:
    return next(compress(count(), map(is_, items, repeat(child))), None)


def _tuple_via(t: tuple, child: Any) -> Optional[str]:
    """``[index]`` from the tuple's referents: a tuple is never indexed nor iterated here."""
    refs = gc.get_referents(t)
    size = tuple.__len__(t)
    if len(refs) != size:  # still being built: an empty slot, positions unknown
        return None
    i = _position(refs, child)
    if i is None:
        return None
    return "[%d]" % (size - 1 - i if _TUPLE_REVERSED else i)


def _frame_via(frame: Any, child: Any) -> Optional[str]:
    if frame.f_back is child:
        return "f_back"
    if frame.f_trace is child:
        return "f_trace"
    if not _PROXY_LOCALS and not any(map(is_, gc.get_referents(frame), repeat(child))):
        # gc sees a frame's locals only once it has finished; reading f_locals of a running one
        # would leave a snapshot of them in it (see the module docstring)
        return None
    d = frame.f_locals
    return _dict_via(d if type(d) is dict else dict(d), child, True)


def _instance_dict(obj: Any) -> Optional[dict]:
    """The instance's ``__dict__`` through the C getset descriptor (never a user property)."""
    for klass in _TYPE_MRO.__get__(type(obj)):
        desc = dict.get(_class_dict(klass), "__dict__")
        if type(desc) is types.GetSetDescriptorType:
            try:
                value = desc.__get__(obj, type(obj))
            except Exception:
                return None
            return value if type(value) is dict else None
    return None


def _class_dict(klass: type) -> dict:
    proxy = _TYPE_DICT.__get__(klass)
    for inner in gc.get_referents(proxy):  # a mappingproxy refers to just its mapping
        if type(inner) is dict:
            return inner
    return {}


def _attribute_via(obj: Any, child: Any) -> Optional[str]:
    for klass in _TYPE_MRO.__get__(type(obj)):
        for name, desc in dict.items(_class_dict(klass)):
            if type(desc) is types.MemberDescriptorType:  # __slots__ entries
                try:
                    if desc.__get__(obj, type(obj)) is child:
                        return name
                except Exception:
                    pass
    d = _instance_dict(obj)
    if d is child:
        return "__dict__"
    return _dict_via(d, child, True) if d is not None else None


def via(referrer: Any, child: Any) -> Optional[str]:
    """How *referrer* refers to *child*: an attribute name, ``[key]``, ``[index]``, or None."""
    t = type(referrer)
    try:
        if issubclass(t, dict):
            return _dict_via(referrer, child, False)
        if t is tuple:
            return _tuple_via(referrer, child)
        for base in (list, tuple, deque):  # a tuple subclass is complete once gc sees it
            if issubclass(t, base):
                i = _position(base.__iter__(referrer), child)
                return None if i is None else "[%d]" % i
        if issubclass(t, (set, frozenset)):
            return "member"
        if t is types.CellType:
            return "cell_contents"
        if t is types.FrameType:
            return _frame_via(referrer, child)
        if issubclass(t, types.ModuleType):
            return _dict_via(_MODULE_DICT.__get__(referrer), child, True)
        if issubclass(t, type):
            return _dict_via(_class_dict(referrer), child, True)
        if t is types.FunctionType:
            for name in ("__closure__", "__defaults__", "__kwdefaults__", "__globals__",
                         "__code__", "__dict__"):
                if getattr(referrer, name, None) is child:
                    return name
            return None
        if t is types.MethodType:
            return "__self__" if referrer.__self__ is child else "__func__"
        return _attribute_via(referrer, child)
    except Exception:  # a racing mutation ("dict changed size") costs the name, not the chain
        return None


def _closure_via(func: Any, cell: Any) -> Optional[str]:
    """``closure:NAME`` for the free variable of *func* whose cell is *cell*."""
    names = func.__code__.co_freevars
    i = _position(func.__closure__, cell)  # a function's closure tuple is complete
    return "closure:%s" % names[i] if i is not None and i < len(names) else None


def _link(obj: Any, via_name: Optional[str]) -> Dict[str, Any]:
    return {"type": type_name(type(obj)), "repr": describe(obj), "via": via_name}


# -- the search ------------------------------------------------------------------------------------
class _Search:
    """The state of one referrers request; its own containers are never reported."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.ignore: set = set()
        self.roots: Dict[int, Any] = {}  # id(globals, class dict, locals copy) -> its owner
        self.keep: List[Any] = []
        self.complete = True

    def out_of_time(self) -> bool:
        if time.perf_counter() > self.deadline:
            self.complete = False
        return not self.complete

    def own(self) -> Set[int]:
        """Ids of the containers of this search (never reported as instances or holders)."""
        return {id(self.ignore), id(self.roots), id(self.keep), id(self.__dict__)}

    def own_frame(self, frame: Any) -> bool:
        return frame.f_code.co_filename.startswith(_OWN_DIR)

    def add_roots(self, classes: List[type]) -> None:
        for m in list(sys.modules.values()):
            try:
                self.roots[id(_MODULE_DICT.__get__(m))] = m
            except Exception:  # sys.modules may hold anything
                pass
        for c in classes:
            d = _class_dict(c)
            if d:
                self.roots[id(d)] = c
        if _PROXY_LOCALS:
            # A running function's locals are invisible to gc; from 3.13 f_locals is a proxy
            # onto them, copied here into a dict of ours that the heap scan then finds.
            for top in list(sys._current_frames().values()):
                f = top
                while f is not None:
                    if not self.own_frame(f):
                        try:
                            d = f.f_locals
                            if type(d) is not dict:
                                d = dict(d)
                        except Exception:
                            d = None
                        if d is not None and id(d) not in self.roots:  # <module>: its globals
                            self.roots[id(d)] = f
                            self.keep.append(d)  # ids stay unique while we hold them
                    f = f.f_back
        self.ignore.update((id(self.roots), id(self.keep)))

    def chain(self, target: Any, depth: int) -> Tuple[List[Dict[str, Any]], str]:
        """The shortest chain from *target* to a root, and how it ended: "module", "class",
        "frame", "unreachable" (no referrers left), "depth" or "budget"."""
        nodes = [target]
        parent = [-1]
        seen = {id(target)}
        frontier = [0]
        ignore = self.ignore
        ignore.add(id(nodes))
        end, found, deepest = "depth", -1, 0
        try:
            for _ in range(depth):
                if not frontier:
                    end = "unreachable"
                    break
                if self.out_of_time():
                    end = "budget"
                    break
                where = {id(nodes[i]): i for i in frontier}
                # An exact tuple is passed through as the call's own argument tuple, which
                # gc.get_referrers skips: no copy of the frontier shows up among the referrers.
                wanted = tuple([nodes[i] for i in frontier])
                ignore.add(id(wanted))
                refs: List[Any] = []
                ignore.add(id(refs))
                # gc.get_referrers runs inside the pipeline: its list is filtered and freed
                # before any bytecode (and so any other thread) runs
                refs.extend(_no_half_built(_chain.from_iterable(
                    starmap(gc.get_referrers, (wanted,)))))
                nxt: List[int] = []
                for n, r in enumerate(refs):
                    if not n & 1023 and n and self.out_of_time():
                        break  # a popular object (a shared str, None): millions of referrers
                    rid = id(r)
                    if rid in seen or rid in ignore:
                        continue
                    rt = type(r)
                    if rt is types.FrameType and self.own_frame(r):
                        continue
                    hit = next(filter(where.__contains__, map(id, gc.get_referents(r))), None)
                    if hit is None:
                        continue
                    seen.add(rid)
                    nodes.append(r)
                    parent.append(where[hit])
                    k = deepest = len(nodes) - 1
                    if (rid in self.roots or rt is types.FrameType
                            or issubclass(rt, (type, types.ModuleType))):
                        found = k
                        break
                    if len(nxt) < MAX_FRONTIER:
                        nxt.append(k)
                ignore.discard(id(wanted))
                ignore.discard(id(refs))
                del refs, wanted
                if found >= 0:
                    end = "root"
                    break
                if not self.complete:
                    end = "budget"
                    break
                frontier = nxt
            else:
                if not frontier:
                    end = "unreachable"
            if found < 0:  # no root: show how far it got
                found = deepest
            path = []
            while found >= 0:
                path.append(nodes[found])
                found = parent[found]
            path.reverse()  # from the instance outwards
            return self._links(path), (self._root_kind(path[-1]) if end == "root" else end)
        finally:
            ignore.discard(id(nodes))

    def _root_kind(self, obj: Any) -> str:
        root = self.roots.get(id(obj), obj) if type(obj) is dict else obj
        t = type(root)
        if t is types.FrameType:
            return "frame"
        return "class" if issubclass(t, type) else "module"

    def _links(self, path: List[Any]) -> List[Dict[str, Any]]:
        """Links from the instance outwards; a globals or class dict is shown as its module or
        class, and an instance's own ``__dict__`` folds into the instance."""
        links: List[Dict[str, Any]] = [_link(path[0], None)]
        i = 1
        while i < len(path):
            obj, child = path[i], path[i - 1]
            owner = self.roots.get(id(obj)) if type(obj) is dict else None
            if owner is not None:
                links.append(_link(owner, _dict_via(obj, child, True)))
            elif (type(obj) is types.CellType and i + 2 < len(path)
                  and type(path[i + 2]) is types.FunctionType
                  and path[i + 2].__closure__ is path[i + 1]):
                links.append(_link(path[i + 2], _closure_via(path[i + 2], obj)))
                i += 2
            elif (type(obj) is dict and i + 1 < len(path)
                  and not issubclass(type(path[i + 1]), _NOT_INSTANCES)
                  and _instance_dict(path[i + 1]) is obj):
                links.append(_link(path[i + 1], _dict_via(obj, child, True)))
                i += 1
            else:
                links.append(_link(obj, via(obj, child)))
            i += 1
        return links


def _scan(name: str, search: _Search) -> Tuple[List[Any], List[type], int]:
    """Instances of the types called *name* (tracked ones; for untracked types such as str or
    int, those referred to by tracked objects), every class alive, and how many objects were
    scanned. No list of the heap outlives the C pipeline that filters it."""
    classes = _all_classes()
    wanted = {id(c) for c in classes if type_name(c) == name}
    matches: List[Any] = []
    if not wanted:
        return matches, classes, 0
    own = search.own()
    own.update((id(classes), id(wanted), id(matches), id(own)))
    search.ignore.update((id(classes), id(matches)))
    scanned = _tracked(matches, wanted, own)
    if matches or search.out_of_time():
        return matches, classes, scanned
    # None tracked: untracked instances (str, int, ...) that tracked objects refer to. The
    # holders hold no tuple still being built, and their referents none either (only the thread
    # building a tuple refers to it); the referents are filtered a block at a time, in C, with
    # the clock checked between blocks (one holder may be a list of millions).
    holders: List[Any] = []
    found: Dict[int, Any] = {}
    own.update((id(holders), id(found)))
    _tracked(holders, None, own)
    refs = _chain.from_iterable(map(gc.get_referents, holders))
    keys = _both(_of_types(wanted), lambda fresh: map(not_, map(gc.is_tracked, fresh())))
    while not search.out_of_time():
        block = list(islice(refs, _BLOCK))
        if not block:
            break
        hits = list(compress(block, keys(block.__iter__)))
        del block
        found.update(zip(map(id, hits), hits))
        del hits
    del refs, holders
    matches.extend(found.values())
    return matches, classes, scanned


def referrers(name: str, limit: int = 3, depth: int = 6, budget_s: float = 1.0) -> Dict[str, Any]:
    """Referrer chains for up to *limit* instances of the type *name* (``module.qualname``)."""
    t0 = time.perf_counter()
    search = _Search(t0 + budget_s)
    matches, classes, scanned = _scan(name, search)
    found = len(matches)
    if found > limit:  # spread over the heap: gc lists the youngest objects first
        samples = [matches[(i * found) // limit] for i in range(limit)]
    else:
        samples = list(matches)
    del matches
    search.ignore.add(id(samples))
    chains: List[List[Dict[str, Any]]] = []
    ends: List[str] = []
    if samples and search.complete:
        search.add_roots(classes)
    del classes
    for i in range(len(samples)):
        if search.out_of_time():
            break
        links, end = search.chain(samples[i], depth)
        chains.append(links)
        ends.append(end)
    return {"type": name, "instances": found, "sampled": len(samples), "chains": chains,
            "ends": ends, "complete": search.complete, "scanned": scanned,
            "elapsed_s": round(time.perf_counter() - t0, 4)}

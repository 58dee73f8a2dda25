"""Who keeps objects of a type alive: for a few sample instances, the shortest chain of referrers
up to a module global, a class attribute or a frame (objgraph's back-references, as text).

Breadth-first backwards, one ``gc.get_referrers`` heap scan per level for the whole frontier
(not one per object), a capped frontier, and a time budget checked between scans. Nothing here
calls user code: names come from type slots and C-level descriptors, reprs are a type name plus a
length or an id, and ``isinstance`` (which may consult a user ``__class__``) is never used on a
heap object. Two side effects, both what a debugger has: naming an attribute of an instance
whose attributes are stored inline (3.11+) makes CPython build its ``__dict__`` (only for the few
objects on a reported chain), and reading a running function's ``f_locals`` (to find objects only
a local variable holds) leaves the frame its locals() snapshot until it is next refreshed.
"""
from __future__ import annotations

import gc
import os
import sys
import time
import types
from collections import deque
from typing import Any, Dict, List, Optional, Tuple

from .census import type_name  # one naming for the census and for the types asked about

_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # memtui/
_TYPE_DICT = type.__dict__["__dict__"]
_TYPE_MRO = type.__dict__["__mro__"]
_MODULE_DICT = types.ModuleType.__dict__["__dict__"]
_FUNC_QUALNAME = types.FunctionType.__dict__["__qualname__"]
_SIZED = (dict, list, tuple, set, frozenset, deque, str, bytes, bytearray)
_NOT_INSTANCES = (dict, list, tuple, set, frozenset, deque, type, types.ModuleType,
                  types.FrameType, types.FunctionType, types.CellType, types.MethodType)
MAX_FRONTIER = 48  # gc.get_referrers compares every reference in the heap against each target


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
        for k, v in dict.items(d):
            if v is child:
                return k if bare and type(k) is str else "[%s]" % _key(k)
        for k in dict.keys(d):
            if k is child:
                return "key"
    except RuntimeError:  # another thread resized it meanwhile: no name, the chain stands
        pass
    return None


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
        for base in (list, tuple, deque):
            if issubclass(t, base):
                for i, v in enumerate(base.__iter__(referrer)):
                    if v is child:
                        return "[%d]" % i
                return None
        if issubclass(t, (set, frozenset)):
            return "member"
        if t is types.CellType:
            return "cell_contents"
        if t is types.FrameType:
            return _dict_via(referrer.f_locals, child, True)
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
    for i, c in enumerate(func.__closure__):
        if c is cell and i < len(names):
            return "closure:%s" % names[i]
    return None


def _link(obj: Any, via_name: Optional[str]) -> Dict[str, Any]:
    return {"type": type_name(type(obj)), "repr": describe(obj), "via": via_name}


class _Search:
    """The state of one referrers request; its own containers are never reported."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.ignore: set = set()
        self.roots: Dict[int, Any] = {}  # id(globals, class dict, f_locals) -> module, class, frame
        self.keep: List[Any] = []
        self.complete = True

    def out_of_time(self) -> bool:
        if time.perf_counter() > self.deadline:
            self.complete = False
        return not self.complete

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
        # A running function's locals are invisible to gc (its frame does not traverse them).
        # Up to 3.12 f_locals copies them into a dict the frame keeps (as locals() does), which
        # the heap scan then finds; from 3.13 it is a proxy, copied here into a dict of ours.
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
                refs = gc.get_referrers(*wanted)
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
                    j = None
                    for x in gc.get_referents(r):
                        j = where.get(id(x))
                        if j is not None:
                            break
                    if j is None:
                        continue
                    seen.add(rid)
                    nodes.append(r)
                    parent.append(j)
                    k = deepest = len(nodes) - 1
                    if (rid in self.roots or rt is types.FrameType
                            or issubclass(rt, (type, types.ModuleType))):
                        found = k
                        break
                    if len(nxt) < MAX_FRONTIER:
                        nxt.append(k)
                ignore.discard(id(wanted))
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
    """Instances of the type called *name* (tracked ones; for untracked types such as str or
    int, those referred to by tracked objects) and every class in the heap."""
    objs = gc.get_objects()
    search.ignore.add(id(objs))
    matches: List[Any] = []
    classes: List[type] = []
    search.ignore.update((id(matches), id(classes)))
    seen_types: Dict[type, Tuple[bool, bool]] = {}
    try:
        for n, o in enumerate(objs):
            t = type(o)
            hit = seen_types.get(t)
            if hit is None:
                hit = seen_types[t] = (type_name(t) == name, issubclass(t, type))
            if hit[0]:
                matches.append(o)
            elif hit[1]:
                classes.append(o)
            if not n & 0x3FFF and search.out_of_time():
                break
        if not matches and search.complete:
            ids = set()
            for start in range(0, len(objs), 1024):
                for o in gc.get_referents(*objs[start:start + 1024]):
                    if id(o) not in ids and type_name(type(o)) == name and not gc.is_tracked(o):
                        ids.add(id(o))
                        matches.append(o)
                if search.out_of_time():
                    break
        return matches, classes, len(objs)
    finally:
        search.ignore.discard(id(objs))
        del objs


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

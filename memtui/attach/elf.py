"""Find where a function lives in another process: its ELF symbol, plus the load address read from
/proc/PID/maps. Reads files only; never touches the process. Stdlib only (64-bit little-endian
ELF, which is what the injector supports)."""
from __future__ import annotations

import mmap
import os
import struct
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence

SHT_SYMTAB, SHT_DYNSYM = 2, 11
STT_FUNC, STT_OBJECT = 2, 1
PT_LOAD = 1


class Mapping(NamedTuple):
    start: int
    end: int
    perms: str
    offset: int
    path: str


def read_maps(pid: int) -> List[Mapping]:
    out: List[Mapping] = []
    with open("/proc/%d/maps" % pid) as fh:
        for line in fh:
            parts = line.split(None, 5)
            if len(parts) < 5:
                continue
            lo, _, hi = parts[0].partition("-")
            path = parts[5].strip() if len(parts) > 5 else ""
            out.append(Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), path))
    return out


def _symbols(data: Any, wanted: Iterable[str]) -> Dict[str, int]:
    """st_value of each wanted defined function/object symbol (dynsym first, then symtab)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for i in range(shnum):
        base = shoff + i * shentsize
        if base + 64 > len(data):
            break
        sh_type, = struct.unpack_from("<I", data, base + 4)
        sh_offset, sh_size = struct.unpack_from("<QQ", data, base + 0x18)
        sh_link, = struct.unpack_from("<I", data, base + 0x28)
        sh_entsize, = struct.unpack_from("<Q", data, base + 0x38)
        sections.append((sh_type, sh_offset, sh_size, sh_link, sh_entsize))
    want = set(wanted)
    found: Dict[str, int] = {}
    for kind in (SHT_DYNSYM, SHT_SYMTAB):
        for sh_type, off, size, link, entsize in sections:
            if sh_type != kind or not entsize or link >= len(sections):
                continue
            str_off = sections[link][1]
            for pos in range(off, off + size - entsize + 1, entsize):
                st_name, st_info = struct.unpack_from("<IB", data, pos)
                st_shndx, = struct.unpack_from("<H", data, pos + 6)
                st_value, = struct.unpack_from("<Q", data, pos + 8)
                if not st_value or st_shndx == 0 or (st_info & 0xF) not in (STT_FUNC, STT_OBJECT):
                    continue
                end = data.find(b"\0", str_off + st_name)
                name = data[str_off + st_name:end].decode("ascii", "replace")
                if name in want and name not in found:
                    found[name] = st_value
        if want <= set(found):
            break
    return found


def _first_load_vaddr(data: Any) -> int:
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    vaddrs = []
    for i in range(phnum):
        base = phoff + i * phentsize
        p_type, = struct.unpack_from("<I", data, base)
        if p_type == PT_LOAD:
            p_offset, p_vaddr = struct.unpack_from("<QQ", data, base + 8)
            vaddrs.append(p_vaddr - p_offset)
    return min(vaddrs) if vaddrs else 0


def resolve(pid: int, names: Sequence[str], maps: Optional[List[Mapping]] = None,
            prefer: Sequence[str] = ()) -> Dict[str, int]:
    """Runtime addresses in *pid* of *names*, searching the mapped objects whose file name
    contains one of *prefer* first (e.g. "libpython", "python"), then every other mapped file."""
    maps = maps if maps is not None else read_maps(pid)
    bases: Dict[str, int] = {}
    for m in maps:
        if m.path.startswith("/") and m.offset == 0 and m.path not in bases:
            bases[m.path] = m.start
    order = sorted(bases, key=lambda p: next((i for i, s in enumerate(prefer)
                                              if s in os.path.basename(p)), len(prefer)))
    found: Dict[str, int] = {}
    for path in order:
        missing = [n for n in names if n not in found]
        if not missing:
            break
        data = _read_object(pid, path)
        if data is None:
            continue
        try:
            syms = _symbols(data, missing)
            bias = bases[path] - _first_load_vaddr(data) if syms else 0
        except (struct.error, ValueError, IndexError):  # not an ELF we understand
            syms = {}
        finally:
            data.close()
        for name, value in syms.items():
            found[name] = bias + value
    return found


def _read_object(pid: int, path: str) -> Optional[Any]:
    """The file behind a mapping (memory-mapped, read-only), through the process's own root so
    that a container's files are the ones read."""
    if path.endswith(" (deleted)"):
        return None
    for candidate in ("/proc/%d/root%s" % (pid, path), path):
        try:
            with open(candidate, "rb") as fh:
                return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            continue
    return None

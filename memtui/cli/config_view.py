"""Rich renderings of profiles for ``memtui config``: resolved values, env-by-env diffs, a key's
precedence chain and the schema's keys. Pure functions: data in, renderables out."""
from __future__ import annotations

import copy
import difflib
import os
import re
import tomllib
from typing import Any, Dict, List, Optional, Sequence, Tuple

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..config import diff as cdiff
from ..config import schema
from ..config.profiles import Layer, Resolved, key_for_env_var, masked, nest, secret_path

KIND_STYLE = {"default": "dim", "file": "", "inherited": "cyan", "env": "yellow", "set": "magenta"}
APPLIES = {
    "agent": "the memtui agent, at start and on push",
    "components": "every matching component, at start and live on push (configure())",
    "app": "your code, through memtui.config.load(); memtui does not act on it",
}


def short_path(path: str) -> str:
    """A path relative to the working directory when it is under it."""
    if not path or not os.path.isabs(path):
        return path
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def source_label(layer: Optional[Layer]) -> str:
    if layer is None:
        return ""
    if layer.kind == "file":
        return short_path(layer.source)
    return layer.label()


def _order(key: str) -> tuple:
    order = _ORDER or _build_order()
    head = key.split(".")[0]
    return (order.get(head, len(order)), key)


_ORDER: dict = {}


def _build_order() -> dict:
    for i, name in enumerate(schema.load_schema()["properties"]):
        _ORDER[name] = i
    return _ORDER


def sorted_keys(keys: Sequence[str]) -> List[str]:
    return sorted(keys, key=_order)


def show_table(resolved: Resolved, mask: bool = True, only_set: bool = False) -> Table:
    table = Table(title="%s  (%s)" % (resolved.env, ", ".join(short_path(f) for f in resolved.files)
                                      or "no profile file: defaults and overrides only"),
                  title_justify="left", show_edge=False, pad_edge=False, expand=False)
    table.add_column("key", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("type", style="dim", no_wrap=True)
    table.add_column("from", no_wrap=True)
    for key in sorted_keys(list(resolved.chains)):
        layer = resolved.chains[key][0]
        if only_set and layer.kind == "default":
            continue
        field = schema.lookup(key)
        style = KIND_STYLE.get(layer.kind, "")
        table.add_row(key, cdiff.render_value(masked(key, layer.value, mask)),
                      field.type_label() if field else "unknown",
                      Text(source_label(layer), style=style))
    return table


def flat_lines(resolved: Resolved, mask: bool = True) -> List[str]:
    return ["%s = %s" % (key, cdiff.render_value(masked(key, resolved.chains[key][0].value, mask)))
            for key in sorted_keys(list(resolved.chains))]


def diff_table(resolved: Sequence[Resolved], rows: Sequence[cdiff.DiffRow]) -> RenderableType:
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("key", no_wrap=True)
    for r in resolved:
        table.add_column(r.env, overflow="fold")
    shown = 0
    for row in sorted(rows, key=lambda r: _order(r.key)):
        cells = []
        for value, layer in zip(row.values, row.sources):
            text = cdiff.render_value(value)
            if layer is not None and layer.kind == "default":
                text += " ·"  # the schema default: no profile sets it
            cells.append(Text(text, style="bold yellow" if row.differs else "dim"))
        table.add_row(Text(row.key, style="bold" if row.differs else "dim"), *cells)
        shown += 1
    ndiff = sum(1 for r in rows if r.differs)
    legend = Text("%d of %d keys differ (bold); · marks a schema default." % (ndiff, shown),
                  style="dim")
    return Group(table, legend)


def explain(key: str, resolved: Resolved, mask: bool = True) -> RenderableType:
    field = schema.lookup(key)
    parts: List[RenderableType] = []
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("key", key)
    if field is not None and not field.free:
        spec = field.spec
        head.add_row("means", Text(spec.get("description", "")))
        head.add_row("type", field.type_label() + ("  (%s)" % field.unit if field.unit else ""))
        rng = schema.range_text(spec)
        if rng:
            head.add_row("range", rng)
        if field.has_default:
            head.add_row("default", cdiff.render_value(field.default))
        head.add_row("acted on by", APPLIES.get(field.applies, field.applies))
    elif field is not None:
        head.add_row("means", "a free-form value of your own (custom)")
    if secret_path(key):
        head.add_row("secret", "yes: masked unless --show-secrets")
    head.add_row("env var", key_for_env_var(key))
    parts.append(head)
    if not resolved.chain(key):
        table = effective(resolved, key)
        if isinstance(table, dict):  # a section or per-name table: what each layer sets in it
            parts.append(_explain_table(key, resolved, table, mask))
            return Group(*parts)
    chain = Table(title="precedence for %s (strongest first)" % resolved.env, title_justify="left",
                  show_edge=False, pad_edge=False)
    chain.add_column("")
    chain.add_column("layer", no_wrap=True)
    chain.add_column("value", overflow="fold")
    have = {(layer.kind, layer.source): layer for layer in resolved.chain(key)}
    winner = resolved.source(key)
    candidates = [("set", "--set"), ("env", key_for_env_var(key))]
    candidates += [("file", f) for f in resolved.files]
    notes: dict = {}
    segments = key.split(".")
    if len(segments) >= 3 and segments[0] in schema.NAMED:
        base_key = ".".join((schema.NAMED[segments[0]],) + tuple(segments[2:]))
        base = resolved.source(base_key)
        candidates.append(("inherited", base_key))
        if base is not None:
            have[("inherited", base_key)] = Layer("inherited", base_key, base.value)
            notes[("inherited", base_key)] = "  (%s)" % source_label(base)
    else:
        candidates.append(("default", "schema"))
    for kind, source in candidates:
        layer = have.get((kind, source))
        label = source_label(Layer(kind, source, None))
        if layer is None:
            chain.add_row("", Text(label, style="dim"), Text("not set", style="dim"))
            continue
        wins = winner is not None and (winner.kind, winner.source) == (kind, source)
        chain.add_row(Text("▶" if wins else "", style="bold green"),
                      Text(label, style="bold" if wins else ""),
                      Text(cdiff.render_value(masked(key, layer.value, mask))
                           + notes.get((kind, source), ""),
                           style="bold green" if wins else "dim strike"))
    parts.append(chain)
    return Group(*parts)


def _explain_table(key: str, resolved: Resolved, table: Dict[str, Any], mask: bool) -> Table:
    """The precedence of a table-valued key (``caches.users``, ``cache.tiers``): the part of it
    each layer sets, layers that supply a winning value marked, then the effective table."""
    prefix = key + "."
    env_label = key_for_env_var(key) + "__*"

    def group(layer: Layer) -> Tuple[str, str]:
        if layer.kind == "env":
            return ("env", env_label)
        return (layer.kind, layer.source)

    sets: Dict[Tuple[str, str], Dict[str, Any]] = {}
    winners = set()
    own = set()
    for k, chain in resolved.chains.items():
        if not k.startswith(prefix):
            continue
        rel = k[len(prefix):]
        own.add(rel)
        for i, layer in enumerate(chain):
            sets.setdefault(group(layer), {}).setdefault(rel, layer.value)
            if i == 0:
                winners.add(group(layer))
    candidates = [("set", "--set"), ("env", env_label)] + [("file", f) for f in resolved.files]
    segments = key.split(".")
    if len(segments) >= 2 and segments[0] in schema.NAMED:
        base_key = ".".join((schema.NAMED[segments[0]],) + tuple(segments[2:]))
        inherited = effective(resolved, base_key)
        if isinstance(inherited, dict):
            flat = _flat(inherited)
            kept = {r: v for r, v in flat.items() if not _shadowed(r, own)}
            if kept:
                sets[("inherited", base_key)] = kept
                winners.add(("inherited", base_key))
        candidates.append(("inherited", base_key))
    else:
        candidates.append(("default", "schema"))
    chain_table = Table(title="precedence for %s (strongest first)" % resolved.env,
                        title_justify="left", show_edge=False, pad_edge=False)
    chain_table.add_column("")
    chain_table.add_column("layer", no_wrap=True)
    chain_table.add_column("sets", overflow="fold")
    for kind, source in candidates:
        label = source_label(Layer(kind, source, None))
        part = sets.get((kind, source))
        if not part:
            chain_table.add_row("", Text(label, style="dim"), Text("not set", style="dim"))
            continue
        wins = (kind, source) in winners
        chain_table.add_row(Text("▶" if wins else "", style="bold green"),
                            Text(label, style="bold" if wins else ""),
                            Text(cdiff.render_value(masked(key, nest(part), mask)),
                                 style="green" if wins else "dim strike"))
    chain_table.add_row(Text("=", style="bold green"), Text("effective", style="bold"),
                        Text(cdiff.render_value(masked(key, table, mask)), style="bold green"))
    return chain_table


def _flat(table: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def _shadowed(rel: str, own: Any) -> bool:
    """An inherited sub-key the per-name table sets itself (or sets above or below)."""
    return any(rel == o or rel.startswith(o + ".") or o.startswith(rel + ".") for o in own)


def effective(resolved: Resolved, key: str) -> Any:
    """What ``config get KEY`` prints: a leaf's winning value; for a section, a per-name table
    (``caches.users``) or a table-valued key (``cache.tiers``), the nested table of every value
    under it, per-name tables including what they inherit from their section (as each of their
    keys does); ``cdiff.MISSING`` when nothing gives the key a value."""
    chain = resolved.chain(key)
    if chain:
        return chain[0].value
    parts = key.split(".")
    if key in schema.NAMED:  # "caches": each named table, effective
        names = resolved.values.get(key)
        return {n: effective(resolved, "%s.%s" % (key, n))
                for n in (names if isinstance(names, dict) else {})}
    prefix = key + "."
    own = {k[len(prefix):]: c[0].value for k, c in resolved.chains.items() if k.startswith(prefix)}
    merged: Dict[str, Any] = {}
    if len(parts) >= 2 and parts[0] in schema.NAMED and schema.lookup(key) is not None:
        base = effective(resolved, ".".join((schema.NAMED[parts[0]],) + tuple(parts[2:])))
        if isinstance(base, dict):
            merged.update({r: v for r, v in _flat(base).items() if not _shadowed(r, own)})
    merged.update(own)
    if merged:
        return nest({k: copy.deepcopy(v) for k, v in sorted(merged.items(), key=_rel_order)})
    field = schema.lookup(key)
    if field is not None and field.has_default and field.default == {}:
        return {}
    return cdiff.MISSING


def _rel_order(item: Tuple[str, Any]) -> Tuple[int, str]:
    return (item[0].count("."), item[0])


# -- secrets in TOML text ---------------------------------------------------------------------------
_SEG = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_DOTTED = _SEG + r"(?:\s*\.\s*" + _SEG + r")*"
_HEADER = re.compile(r"^\s*\[\[?\s*(" + _DOTTED + r")\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(r"^(\s*)(" + _DOTTED + r")(\s*=\s*)(.*)$")
_INLINE = re.compile(r"(" + _DOTTED + r")(\s*=\s*)"
                     r'("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^,{}\[\]\s]+)')
_MASKED = '"%s"' % schema.MASK


def _key_parts(text: str) -> List[str]:
    out = []
    for seg in re.findall(_SEG, text):
        if seg[:1] == '"':
            try:
                seg = tomllib.loads("k = " + seg)["k"]
            except tomllib.TOMLDecodeError:
                seg = seg[1:-1]
        elif seg[:1] == "'":
            seg = seg[1:-1]
        out.append(seg)
    return out


def masked_toml_lines(lines: Sequence[str]) -> List[str]:
    """*lines* of a profile with the value of every secret-looking key (by its full dotted path,
    tables and inline tables included) shown as ``"********"``; line ends kept."""
    out: List[str] = []
    table: List[str] = []
    closing: Optional[str] = None  # inside a secret multi-line string: its closing quotes
    for line in lines:
        body = line.rstrip("\r\n")
        end = line[len(body):]
        if closing is not None:
            if closing in body:
                closing = None
            out.append(schema.MASK + end if body.strip() else line)
            continue
        header = _HEADER.match(body)
        if header:
            table = _key_parts(header.group(1))
            out.append(line)
            continue
        assign = _ASSIGN.match(body)
        if not assign:
            out.append(line)
            continue
        indent, key, eq, value = assign.groups()
        path = table + _key_parts(key)
        if secret_path(".".join(path)):
            for quotes in ('"""', "'''"):
                if value.startswith(quotes) and quotes not in value[3:]:
                    closing = quotes
            out.append(indent + key + eq + _MASKED + end)
        elif value.startswith("{"):
            def inner(m: "re.Match[str]") -> str:
                full = ".".join(path + _key_parts(m.group(1)))
                return m.group(1) + m.group(2) + (_MASKED if secret_path(full) else m.group(3))

            out.append(indent + key + eq + _INLINE.sub(inner, value) + end)
        else:
            out.append(line)
    return out


def _secret_strings(text: str) -> List[str]:
    """Secret string values in a profile's text (longest first), for masking them wherever the
    line-by-line reading missed them; nothing if the text is not TOML."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []
    found = set()

    def walk(node: Any, path: str, secret: bool) -> None:
        secret = secret or (bool(path) and secret_path(path))
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, "%s.%s" % (path, k) if path else k, secret)
        elif isinstance(node, list):
            for v in node:
                walk(v, path, secret)
        elif secret and isinstance(node, str) and len(node) >= 3:
            found.add(node)

    walk(data, "", False)
    return sorted(found, key=len, reverse=True)


def masked_file_diff(before: str, after: str, path: str) -> str:
    """A unified diff of two versions of a profile that shows which lines change but not the
    secret values in them (compared as they are, printed masked)."""
    a, b = before.splitlines(True), after.splitlines(True)
    ma, mb = masked_toml_lines(a), masked_toml_lines(b)
    secrets = sorted(set(_secret_strings(before)) | set(_secret_strings(after)), key=len,
                     reverse=True)

    def shown(line: str) -> str:
        for secret in secrets:
            line = line.replace(secret, schema.MASK)
        return line if line.endswith("\n") else line + "\n"

    out: List[str] = []
    for group in difflib.SequenceMatcher(None, a, b).get_grouped_opcodes(3):
        if not out:
            out += ["--- %s\n" % path, "+++ %s (new)\n" % path]
        first, last = group[0], group[-1]
        out.append("@@ -%s +%s @@\n" % (_hunk_range(first[1], last[2]),
                                         _hunk_range(first[3], last[4])))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [" " + shown(line) for line in ma[i1:i2]]
                continue
            if tag in ("replace", "delete"):
                out += ["-" + shown(line) for line in ma[i1:i2]]
            if tag in ("replace", "insert"):
                out += ["+" + shown(line) for line in mb[j1:j2]]
    return "".join(out)


def _hunk_range(start: int, stop: int) -> str:
    """As difflib.unified_diff writes a hunk's line range."""
    beginning, length = start + 1, stop - start
    if length == 1:
        return str(beginning)
    if not length:
        beginning -= 1
    return "%d,%d" % (beginning, length)


def schema_keys_table() -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for name, kw in (("key", {"no_wrap": True}), ("type", {"no_wrap": True}),
                     ("default", {}), ("range", {}), ("by", {"no_wrap": True}),
                     ("description", {"overflow": "fold"})):
        table.add_column(name, **kw)
    for field in schema.leaves():
        spec = field.spec
        rng = ""
        rng = schema.range_text(spec)
        table.add_row(field.key, field.type_label(),
                      cdiff.render_value(field.default) if field.has_default else "",
                      rng, field.applies, Text(spec.get("description", "")))
    for section in ("pools", "caches", "worker_pools"):
        table.add_row("%s.NAME.*" % section, "table", "", "", "components",
                      Text("Per-name overrides of [%s]." % schema.NAMED[section]))
    table.add_row("custom.*", "any", "", "", "app", "Free-form values of your own.")
    return table


def value_text(value: Any) -> str:
    """``config get`` output: strings bare, everything else as TOML would write it."""
    if isinstance(value, str):
        return value
    return cdiff.render_value(value)

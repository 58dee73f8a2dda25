"""Rich renderings of profiles for ``memtui config``: resolved values, env-by-env diffs, a key's
precedence chain and the schema's keys. Pure functions: data in, renderables out."""
from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..config import diff as cdiff
from ..config import schema
from ..config.profiles import Layer, Resolved, key_for_env_var, masked

KIND_STYLE = {"default": "dim", "file": "", "inherited": "cyan", "env": "yellow", "set": "magenta"}
APPLIES = {
    "agent": "the memtui agent, at start and on push",
    "components": "every matching component, at start and live on push (configure())",
    "app": "your code, through memtui.config.load(); memtui does not act on it",
    "reserved": "validated now; the agent's heap insight acts on it",
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
        head.add_row("means", spec.get("description", ""))
        head.add_row("type", field.type_label() + ("  (%s)" % field.unit if field.unit else ""))
        if "minimum" in spec or "maximum" in spec:
            head.add_row("range", "%s … %s" % (spec.get("minimum", ""), spec.get("maximum", "")))
        if field.has_default:
            head.add_row("default", cdiff.render_value(field.default))
        head.add_row("acted on by", APPLIES.get(field.applies, field.applies))
    elif field is not None:
        head.add_row("means", "a free-form value of your own (custom)")
    if schema.is_secret(key):
        head.add_row("secret", "yes: masked unless --show-secrets")
    head.add_row("env var", key_for_env_var(key))
    parts.append(head)
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


def schema_keys_table() -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for name, kw in (("key", {"no_wrap": True}), ("type", {"no_wrap": True}),
                     ("default", {}), ("range", {}), ("by", {"no_wrap": True}),
                     ("description", {"overflow": "fold"})):
        table.add_column(name, **kw)
    for field in schema.leaves():
        spec = field.spec
        rng = ""
        if "minimum" in spec or "maximum" in spec:
            rng = "%s…%s" % (spec.get("minimum", ""), spec.get("maximum", ""))
        table.add_row(field.key, field.type_label(),
                      cdiff.render_value(field.default) if field.has_default else "",
                      rng, field.applies, spec.get("description", ""))
    for section in ("pools", "caches", "worker_pools"):
        table.add_row("%s.NAME.*" % section, "table", "", "", "components",
                      "Per-name overrides of [%s]." % schema.NAMED[section])
    table.add_row("custom.*", "any", "", "", "app", "Free-form values of your own.")
    return table


def value_text(value: Any) -> str:
    """``config get`` output: strings bare, everything else as TOML would write it."""
    if isinstance(value, str):
        return value
    return cdiff.render_value(value)

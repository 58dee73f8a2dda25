"""What the Profiles pane shows, worked out without textual: which directory, every env
resolved and compared, and the text of values, chains and schema facts."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from rich.text import Text

from ..config import ConfigError, ProfileStore, Resolved, schema
from ..config.diff import MISSING, DiffRow, compare, render_value
from ..config.profiles import DIR_VAR, Layer, env_var_overrides, profiles_dir, secret_path
from ..config.safe_write import show_path

ENV_MARK = "$"  # before a value an env var of this dashboard's environment sets
DEFAULT_MARK = " ·"  # after a value only the schema default gives
KIND_STYLE = {"env": "bold magenta", "file": "green", "inherited": "cyan", "default": "dim",
              "set": "magenta"}
WHY = {"given": "the directory given to the dashboard", "the agent's": "where the agent's profile "
       "is", "./profiles": "the default, ./profiles", "$%s" % DIR_VAR: "from $%s" % DIR_VAR}
APPLIES = {"agent": "the agent (live on push)", "components": "components (live on push)",
           "app": "your code (memtui.config.load)"}


# -- what the pane shows, without textual ---------------------------------------------------------
def problem_strings(exc: ConfigError) -> List[str]:
    """Every problem as ``FILE::$.path: message``, paths shortened (the message if none)."""
    return [str(p._replace(source=show_path(p.source))) if p.source.startswith("/") else str(p)
            for p in exc.problems] or [str(exc)]


def choose_directory(given: Optional[str], info: Mapping[str, Any],
                     environ: Optional[Mapping[str, str]] = None) -> Tuple[str, str]:
    """(profiles directory, why that one): the dashboard's own setting, else the directory of
    the profile the agent loaded (when it exists here), else $MEMTUI_PROFILES or ./profiles."""
    environ = os.environ if environ is None else environ
    if given:
        return os.path.abspath(given), "given"
    profile = info.get("profile")
    if isinstance(profile, str) and profile and os.path.isdir(os.path.dirname(profile)):
        return os.path.dirname(os.path.abspath(profile)), "the agent's"
    return profiles_dir(None, environ), ("$%s" % DIR_VAR if environ.get(DIR_VAR)
                                         else "./profiles")


def signature(directory: str) -> Tuple[Any, ...]:
    """Changes when a profile file in *directory* is added, removed or rewritten."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".toml"))
    except OSError:
        return (directory,)
    out: List[Any] = [directory]
    for name in names:
        try:
            st = os.stat(os.path.join(directory, name))
        except OSError:
            continue
        out.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


@dataclass(frozen=True)
class ProfilesView:
    """Every environment of one directory resolved and compared, key by key."""

    directory: str
    why: str
    store: ProfileStore
    envs: Tuple[str, ...]  # the columns: environments that resolved
    resolved: Mapping[str, Resolved]
    rows: Tuple[DiffRow, ...]  # keys some environment sets
    errors: Tuple[str, ...]  # environments that could not be resolved, with why
    env_vars: Tuple[Tuple[str, str, str], ...]  # (key, value, MEMTUI__VAR) in our environment

    def row(self, key: str) -> Optional[DiffRow]:
        for row in self.rows:
            if row.key == key:
                return row
        return None


def load_view(directory: str, why: str) -> ProfilesView:
    """Resolve every environment in *directory* the way ``memtui config`` does (this process's
    MEMTUI__ variables included) and compare them."""
    store = ProfileStore(directory)
    resolved: Dict[str, Resolved] = {}
    errors: List[str] = []
    for env in store.envs():
        try:
            resolved[env] = store.resolve(env)
        except ConfigError as exc:
            errors += ["%s: %s" % (env, line) for line in problem_strings(exc)]
    envs = tuple(resolved)
    rows = tuple(r for r in compare([resolved[e] for e in envs]) if r.set_somewhere())
    return ProfilesView(directory, why, store, envs, resolved, rows, tuple(errors),
                        tuple(env_var_overrides(store.environ)))


def value_text(key: str, value: Any) -> str:
    """A value as a cell shows it: strings bare (but free-form ones quoted, as they are typed)."""
    if value is MISSING:
        return "—"
    if value == schema.MASK:
        return value
    if isinstance(value, str) and not (schema.lookup(key) or schema.Field(key, {})).free:
        return value
    return render_value(value)


def edit_text(key: str, layer: Optional[Layer]) -> str:
    """What the edit box starts with: the value as the files give it (an env var's is not the
    file's), in the form ``memtui config set`` takes; empty for secrets."""
    if layer is None or secret_path(key):
        return ""
    return value_text(key, layer.value)


def clip(text: str, width: int) -> str:
    if width <= 0 or len(text) <= width:
        return text
    return text[:max(1, width - 1)] + "…"


def clip_middle(text: str, width: int) -> str:
    """``alerts.cache_hi…warning``: keeps a key's section and its last word."""
    if width <= 0 or len(text) <= width:
        return text
    tail = (width - 1) // 2
    return text[:width - 1 - tail] + "…" + text[len(text) - tail:]


def layer_label(layer: Layer, resolved: Resolved) -> str:
    if layer.kind == "env":
        return "%s (this dashboard's environment)" % layer.source
    if layer.kind == "file":
        return show_path(layer.source)
    if layer.kind == "inherited":
        base = resolved.source(layer.source)
        return "inherits %s%s" % (layer.source, " from %s" % layer_label(base, resolved)
                                  if base is not None and base.kind != "inherited" else "")
    return layer.label()


def about_text(key: str, sep: str = "  ") -> Text:
    """The schema's word on *key*: type, unit, range, default, who acts on it, its meaning."""
    field = schema.lookup(key)
    text = Text()
    if field is None:
        return text.append("not in the schema", style="red")
    if field.free:
        return text.append("free-form value of your own (custom.*); read by your code", style="dim")
    facts = [field.type_label() + (" (%s)" % field.unit if field.unit else "")]
    rng = schema.range_text(field.spec)
    if rng:
        facts.append("range %s" % rng)
    if field.has_default:
        facts.append("default %s" % render_value(field.default))
    facts.append("for %s" % APPLIES.get(field.applies, field.applies))
    text.append(" · ".join(facts), style="dim")
    description = field.spec.get("description")
    if description:
        text.append(sep + description)
    return text

"""Profiles on disk and how one environment's values are resolved, with provenance for every key.

Precedence, strongest first: ``--set`` > ``MEMTUI__SECTION__KEY`` > ENV.toml > the files it
extends > schema defaults; a per-name key (``caches.users.ttl``) not set anywhere inherits its
section default (``cache.ttl``). Standard library only: the agent loads profiles with it.
"""
from __future__ import annotations

import os
import tomllib
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ..agent.monitor import SETTING_KEYS as AGENT_SETTINGS
from ..agent.startup import (_ENV_NAME, DEFAULT_DIR, DEFAULT_ENV, DIR_VAR,  # noqa: F401
                             ENV_VAR, VAR_PREFIX)
from . import schema
from .errors import ConfigError, Problem


BOM_MESSAGE = "starts with a byte-order mark; save it as UTF-8 without BOM"


def _starts_with_bom(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(3) == b"\xef\xbb\xbf"
    except OSError:
        return False


class Layer(NamedTuple):
    kind: str  # "set" | "env" | "file" | "inherited" | "default"
    source: str  # "--set", "MEMTUI__CACHE__TTL", a file path, "cache.ttl", "schema"
    value: Any

    def label(self) -> str:
        return {"set": "--set", "default": "schema default"}.get(
            self.kind, ("inherits " + self.source) if self.kind == "inherited" else self.source)


def active_env(env: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> str:
    environ = os.environ if environ is None else environ
    name = env or environ.get(ENV_VAR) or DEFAULT_ENV
    if not _ENV_NAME.match(name):
        raise ConfigError("%r is not an environment name (letters, digits, _ and - only)." % name)
    return name


def profiles_dir(directory: Optional[str] = None,
                 environ: Optional[Mapping[str, str]] = None) -> str:
    environ = os.environ if environ is None else environ
    return os.path.abspath(directory or environ.get(DIR_VAR) or DEFAULT_DIR)


# -- nested <-> flat ------------------------------------------------------------------------------
def flatten(nested: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"cache": {"ttl": 5}}`` -> ``{"cache.ttl": 5}``; lists and non-table values are leaves.
    Free-form ``custom`` tables are flattened too, so each custom key has its own provenance."""
    out: Dict[str, Any] = {}
    for key, value in nested.items():
        full = prefix + str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, full + "."))
        elif isinstance(value, Mapping):
            field = schema.lookup(full)
            if field is None or not (field.free or field.spec.get("type") == "object"):
                out[full] = dict(value)  # an empty table where a value belongs: keep it visible
        else:
            out[full] = value
    return out


def nest(flat: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[parts[-1]] = value
    return out


def parse_assignment(text: str) -> Tuple[str, str]:
    """``"cache.ttl=5m"`` -> ``("cache.ttl", "5m")``; ValueError without ``=``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError("expected KEY=VALUE, got %r" % text)
    return key.strip(), value


def typed_overrides(pairs: Iterable[Tuple[str, str, str]]) -> Tuple[Dict[str, Tuple[Any, str]],
                                                                   List[Problem]]:
    """``[(key, text, source)]`` -> ``{key: (typed value, source)}`` and every problem found."""
    out: Dict[str, Tuple[Any, str]] = {}
    problems: List[Problem] = []
    for key, text, source in pairs:
        field = schema.lookup(key)
        path = tuple(key.split("."))
        if field is None:
            problems.append(Problem(source, path, schema.unknown_key_message(key)))
            continue
        if not schema.is_leaf(field):
            problems.append(Problem(source, path, "%s is a section; set one of its keys" % key))
            continue
        try:
            out[key] = (schema.coerce(field, text), source)
        except ValueError as exc:
            problems.append(Problem(source, path, str(exc)))
    return out, problems


def env_var_overrides(environ: Mapping[str, str]) -> List[Tuple[str, str, str]]:
    """``MEMTUI__CACHES__USERS__TTL=5m`` -> ``("caches.users.ttl", "5m", "MEMTUI__CACHES__...")``.
    Section and key names are lower-cased; a component name keeps its case only in files."""
    out = []
    for name in sorted(environ):
        if name.startswith(VAR_PREFIX) and len(name) > len(VAR_PREFIX):
            key = ".".join(p.lower() for p in name[len(VAR_PREFIX):].split("__"))
            out.append((key, environ[name], name))
    return out


def key_for_env_var(key: str) -> str:
    return VAR_PREFIX + "__".join(p.upper() for p in key.split("."))


# -- the resolved profile -------------------------------------------------------------------------
class Resolved:
    """One environment's values, complete (schema defaults filled in), with the chain of layers
    behind every key. ``values`` is nested, ``flat`` dotted; ``explicit()`` leaves out keys that
    only have their schema default, which is what components and the agent are given."""

    def __init__(self, env: str, directory: str, files: List[str],
                 chains: Dict[str, List[Layer]]) -> None:
        self.env = env
        self.directory = directory
        self.files = files  # the env's file first, then what it extends
        self.chains = chains  # key -> layers, strongest first (the first one wins)
        self.flat = {k: c[0].value for k, c in chains.items()}
        self.values = nest(self.flat)

    def get(self, key: str, default: Any = None) -> Any:
        """A leaf's value, the effective one for a per-name key (its own, else its section's),
        or a nested dict for a section."""
        chain = self.chain(key)
        if chain:
            return chain[0].value
        node: Any = self.values
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def chain(self, key: str) -> List[Layer]:
        """Every layer that gives *key* a value, strongest first (empty for a section)."""
        if key in self.chains:
            return self.chains[key]
        parts = key.split(".")
        if len(parts) >= 3 and parts[0] in schema.NAMED and schema.lookup(key) is not None:
            inherited_key = ".".join((schema.NAMED[parts[0]],) + tuple(parts[2:]))
            base = self.chains.get(inherited_key)
            if base:
                return [Layer("inherited", inherited_key, base[0].value)]
        return []

    def source(self, key: str) -> Optional[Layer]:
        chain = self.chain(key)
        return chain[0] if chain else None

    def explicit(self) -> Dict[str, Any]:
        """Nested values set by some layer other than a schema default."""
        return nest({k: c[0].value for k, c in self.chains.items() if c[0].kind != "default"})

    def to_json(self, mask: bool = True) -> Dict[str, Any]:
        rows = {}
        for key, chain in sorted(self.chains.items()):
            field = schema.lookup(key)
            rows[key] = {"value": masked(key, chain[0].value, mask),
                         "type": field.type_label() if field else "unknown",
                         "source": chain[0].label(), "kind": chain[0].kind}
        return {"env": self.env, "directory": self.directory, "files": self.files, "keys": rows}


def secret_path(key: str) -> bool:
    """True when *key* or any table above it is secret (``schema.is_secret`` on every prefix):
    ``custom.db_password``, ``custom.db.password``, ``custom.secrets.host``."""
    parts = key.split(".")
    return any(schema.is_secret(".".join(parts[:i])) for i in range(len(parts), 0, -1))


def masked(key: str, value: Any, mask: bool = True) -> Any:
    """*value* with every secret in it replaced by ``schema.MASK``: the whole value when *key*
    (or a table above it) is secret, else each secret-looking key inside tables and lists."""
    if not mask:
        return value
    if secret_path(key):
        return schema.MASK
    if isinstance(value, Mapping):
        return {k: masked("%s.%s" % (key, k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(key, v) for v in value]
    return value


class ProfileStore:
    """The profiles directory: which environments exist, reading them, following ``extends``."""

    def __init__(self, directory: Optional[str] = None,
                 environ: Optional[Mapping[str, str]] = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.directory = profiles_dir(directory, self.environ)
        self.overlay: Dict[str, Dict[str, Any]] = {}  # name -> content used instead of the disk

    def with_content(self, name: str, data: Dict[str, Any]) -> "ProfileStore":
        """A copy that reads *data* for profile *name*: checks an edit before it is written."""
        other = ProfileStore(self.directory, self.environ)
        other.overlay = dict(self.overlay)
        other.overlay[name] = data
        return other

    def path(self, env: str) -> str:
        return os.path.join(self.directory, active_env(env, {}) + ".toml")

    def names(self) -> List[str]:
        """Every profile file's name (without .toml), sorted."""
        try:
            entries = os.listdir(self.directory)
        except OSError:
            return []
        return sorted(set(n[:-5] for n in entries if n.endswith(".toml") and _ENV_NAME.match(n[:-5])
                          and os.path.isfile(os.path.join(self.directory, n))) | set(self.overlay))

    def envs(self) -> List[str]:
        """Environments: every profile except bases (files others extend that name no environment
        of their own)."""
        names = self.names()
        bases = set()
        for name in names:
            try:
                data = self.read(name)
            except ConfigError:
                continue
            parent = data.get("extends")
            if isinstance(parent, str) and parent in names:
                try:
                    if "environment" not in self.read(parent):
                        bases.add(parent)
                except ConfigError:
                    pass
        return [n for n in names if n not in bases]

    def read(self, env: str) -> Dict[str, Any]:
        """One file's own content (no extends, no defaults). ConfigError names the file."""
        if env in self.overlay:
            return self.overlay[env]
        path = self.path(env)
        try:
            with open(path, "rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            have = ", ".join(self.names()) or "none"
            raise ConfigError("No profile %r: %s does not exist (profiles here: %s)."
                              % (env, path, have),
                              [Problem(path, (), "no such file (profiles here: %s)" % have)]
                              ) from None
        except tomllib.TOMLDecodeError as exc:
            if _starts_with_bom(path):  # tomllib's "Invalid statement (at line 1, column 1)"
                raise ConfigError("%s %s." % (path, BOM_MESSAGE),
                                  [Problem(path, (), BOM_MESSAGE)]) from None
            raise ConfigError("%s is not valid TOML: %s." % (path, exc),
                              [Problem(path, (), "not valid TOML: %s" % exc)]) from None
        except OSError as exc:
            raise ConfigError("Cannot read %s: %s." % (path, exc.strerror or exc),
                              [Problem(path, (), exc.strerror or str(exc))]) from None

    def chain(self, env: str) -> List[Tuple[str, str, Dict[str, Any]]]:
        """``[(name, path, data)]``: the env's file, then each file it extends, in that order."""
        out: List[Tuple[str, str, Dict[str, Any]]] = []
        name: Optional[str] = env
        seen: List[str] = []
        while name is not None:
            if name in seen:
                path = self.path(seen[-1])
                raise ConfigError("%s: extends loops back to %r (%s)." % (
                    path, name, " -> ".join(seen + [name])),
                    [Problem(path, ("extends",), "extends loops: %s" % " -> ".join(seen + [name]))])
            seen.append(name)
            data = self.read(name)
            out.append((name, self.path(name), data))
            parent = data.get("extends")
            if parent is not None and not (isinstance(parent, str) and _ENV_NAME.match(parent)):
                raise ConfigError("%s: extends must name another profile, got %r." % (
                    self.path(name), parent), [Problem(self.path(name), ("extends",),
                                                       "must name another profile")])
            name = parent
        return out

    def resolve(self, env: Optional[str] = None, overrides: Sequence[str] = (),
                environ: Optional[Mapping[str, str]] = None, files: bool = True) -> Resolved:
        """The env's resolved values. *overrides* are ``KEY=VALUE`` strings (``--set``); env vars
        come from *environ* (default: the store's). Bad overrides or env vars: one ConfigError
        listing every problem. ``files=False`` resolves defaults and overrides only."""
        env = active_env(env, self.environ)
        environ = self.environ if environ is None else environ
        chains: Dict[str, List[Layer]] = {}
        for key, value in schema.defaults().items():
            chains[key] = [Layer("default", "schema", value)]
        chains["environment"] = [Layer("default", "file name", env)]
        file_list: List[str] = []
        if files:
            for _name, path, data in reversed(self.chain(env)):
                file_list.insert(0, path)
                for key, value in flatten({k: v for k, v in data.items()
                                           if k != "extends"}).items():
                    chains.setdefault(key, []).insert(0, Layer("file", path, value))
        pairs = []
        problems: List[Problem] = []
        for text in overrides:
            try:
                key, value = parse_assignment(text)
            except ValueError as exc:
                problems.append(Problem("--set", (), str(exc)))
                continue
            pairs.append((key, value, "--set"))
        typed_env, env_problems = typed_overrides(env_var_overrides(environ))
        typed_set, set_problems = typed_overrides(pairs)
        problems += [p._replace(source="env:" + p.source) for p in env_problems] + set_problems
        if problems:
            raise ConfigError("%d bad override%s." % (len(problems), "s"[:len(problems) > 1]),
                              problems)
        for kind, typed in (("env", typed_env), ("set", typed_set)):
            for key, (value, source) in typed.items():
                _drop_shadowed(chains, key)
                chains.setdefault(key, []).insert(0, Layer(kind, source, value))
        return Resolved(env, self.directory, file_list, chains)


def _drop_shadowed(chains: Dict[str, List[Layer]], key: str) -> None:
    """An override of a whole free-form value replaces its sub-keys (``custom.db={...}``)."""
    prefix = key + "."
    for other in [k for k in chains if k.startswith(prefix)]:
        del chains[other]


def load(env: Optional[str] = None, profiles: Optional[str] = None, overrides: Sequence[str] = (),
         environ: Optional[Mapping[str, str]] = None) -> Resolved:
    """Resolve one environment: ``memtui.config.load("prod").get("cache.max_entries")``."""
    store = ProfileStore(profiles, environ)
    return store.resolve(env, overrides)


# -- what the agent and components are given ------------------------------------------------------
AGENT_KEYS = {  # profile key -> AgentOptions name
    "environment": "env", "profiler.interval": "interval", "profiler.history": "history",
    "profiler.trace": "trace", "profiler.tracemalloc_frames": "trace_frames",
    "alerts.memory_limit": "memory_limit", "alerts.warning_pct": "warning_pct",
    "alerts.critical_pct": "critical_pct", "alerts.hysteresis_pct": "hysteresis_pct",
}
COMPONENT_SECTIONS = ("pool", "pools", "cache", "caches", "workers", "worker_pools", "execution")


def agent_options(resolved: Resolved) -> Dict[str, Any]:
    """AgentOptions values the profile sets (not schema defaults: those equal the agent's own)."""
    out = {}
    for key, option in AGENT_KEYS.items():
        layer = resolved.source(key)
        if layer is not None and layer.kind != "default":
            value = layer.value
            if key == "alerts.memory_limit" and value in (0, "0"):
                value = None
            out[option] = value
    if "env" not in out:
        out["env"] = resolved.env
    return out


def component_settings(resolved: Resolved) -> Dict[str, Any]:
    """The sections the agent hands to components (``Agent.apply_settings``): explicit values of
    keys that components act on, with 'no bound' zeros as None; plus ``tuner``, and the
    ``profiler`` and ``alerts`` keys of AGENT_SETTINGS (snapshots, alerts, pressure actions), for
    the agent."""
    explicit = resolved.explicit()
    out: Dict[str, Any] = {}
    for section in COMPONENT_SECTIONS:
        values = explicit.get(section)
        if not isinstance(values, dict):
            continue
        if section in schema.NAMED:
            base = schema.NAMED[section]
            named = {name: _component_values(base, over) for name, over in values.items()
                     if isinstance(over, dict)}
            named = {k: v for k, v in named.items() if v}
            if named:
                out[section] = named
        else:
            picked = _component_values(section, values)
            if picked:
                out[section] = picked
    tuner = explicit.get("tuner")
    if isinstance(tuner, dict):
        out["tuner"] = {k: v for k, v in tuner.items() if k in ("enabled", "gc_thresholds",
                                                                  "gc_freeze")}
    out.update(nest({k: c[0].value for k, c in resolved.chains.items()
                     if k in AGENT_SETTINGS and c[0].kind != "default"}))
    return out


def _component_values(section: str, values: Mapping[str, Any]) -> Dict[str, Any]:
    out = {}
    for key, value in values.items():
        field = schema.lookup("%s.%s" % (section, key))
        if field is not None and field.applies == "components":
            out[key] = schema.component_value(field, value)
    return out

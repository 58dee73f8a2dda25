"""What ``start()`` and ``install()`` run with: the environment's profile, ``MEMTUI_AGENT_OPTIONS``
and the caller's keywords, layered.

Active environment: the ``env`` argument, else ``MEMTUI_ENV``, else the ``env`` of
``MEMTUI_AGENT_OPTIONS`` (what ``memtui run --env`` sets), else ``dev``. Profiles directory: the
``profiles`` argument, else ``MEMTUI_PROFILES``, else ``./profiles``. When the directory was named,
or ``./profiles`` holds at least one ``*.toml``, ``ENV.toml`` must exist and parse; otherwise (no
such directory, or an unrelated one such as a Django app called ``profiles``) the environment is
only a label and just ``MEMTUI__SECTION__KEY`` variables apply (``profiles=False`` asks for that
explicitly). Options, weakest first: AgentOptions defaults, the profile, ``MEMTUI_AGENT_OPTIONS``,
keywords. Settings: the profile's sections under the ``settings`` argument (the argument wins key
by key).

``memtui.config`` (standard library: tomllib) is imported only when there is a directory or a
variable to read, so a process without profiles starts as cheaply as before.
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple, Union

from . import gc_tuning
from .options import AgentOptions, env_options

# memtui.config.profiles imports these: one definition, here, so that a process without profiles
# never imports the config package.
ENV_VAR = "MEMTUI_ENV"
DIR_VAR = "MEMTUI_PROFILES"
VAR_PREFIX = "MEMTUI__"
DEFAULT_ENV = "dev"
DEFAULT_DIR = "profiles"
_ENV_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class ProfileError(ValueError):
    """A profile the agent cannot use; ``problems`` has each as ``SOURCE::$.path: message``."""

    def __init__(self, message: str, problems: Any = ()) -> None:
        super().__init__(message)
        self.problems = [str(p) for p in problems]


class Plan(NamedTuple):
    options: AgentOptions
    settings: Dict[str, Any]
    enabled: bool  # False: the profile says profiler.enabled = false
    profile: Optional[str]  # the environment's file, when one was read
    note: Optional[str]  # lenient mode: why the profile was left out


def active_env(env: Optional[str], environ: Mapping[str, str],
               from_env: Mapping[str, Any]) -> str:
    name = env or environ.get(ENV_VAR) or from_env.get("env") or DEFAULT_ENV
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise ValueError("%r is not an environment name (letters, digits, _ and - only)" % (name,))
    return name


def plan(env: Optional[str] = None, profiles: Union[str, "os.PathLike[str]", bool, None] = None,
         settings: Optional[Mapping[str, Any]] = None,
         options: Optional[Mapping[str, Any]] = None,
         environ: Optional[Mapping[str, str]] = None, strict: bool = True) -> Plan:
    """Resolve everything an agent starts with. Bad keywords, ``MEMTUI_AGENT_OPTIONS`` or
    ``settings`` raise ValueError. A profile that cannot be used raises ProfileError when
    *strict*; otherwise it is left out (options and settings as if there were none) and
    ``note`` says why."""
    environ = os.environ if environ is None else environ
    if profiles is True or not isinstance(profiles, (str, os.PathLike, bool, type(None))):
        raise ValueError("profiles must be a directory path, or False for no profile files; got "
                         "%r" % (profiles,))
    from_env = env_options(environ)
    name = active_env(env, environ, from_env)
    base = dict(from_env)
    base.update(options or {})
    base["env"] = name  # the label is the environment whose profile was read
    note = None
    try:
        loaded = _read_profile(name, profiles, environ)
    except ProfileError as exc:
        if strict:
            raise
        loaded, note = None, str(exc)
    profile_options, sections, enabled, path = loaded or ({}, {}, True, None)
    try:
        opts = AgentOptions.from_mapping(dict(profile_options, **base))
    except ValueError as exc:
        if not profile_options:
            raise
        AgentOptions.from_mapping(base)  # raises when the profile is not what is wrong
        err = ProfileError("%s: %s." % (path or "profile %r" % name, str(exc).rstrip(".")))
        if strict:
            raise err from None
        opts, note = AgentOptions.from_mapping(base), str(err)
        sections, enabled, path = {}, True, None
    merged = deep_merge(sections, settings or {})
    if "tuner" in merged:
        merged["tuner"] = gc_tuning.check(merged["tuner"])
    return Plan(opts, merged, enabled, path, note)


def _read_profile(env: str, profiles: Union[str, bool, None], environ: Mapping[str, str]
                  ) -> Optional[Tuple[Dict[str, Any], Dict[str, Any], bool, Optional[str]]]:
    """(agent options, component sections, enabled, file) from the profile; None when there is
    neither a profiles directory nor a MEMTUI__ variable to read."""
    directory = None
    if profiles is not False:
        named = profiles or environ.get(DIR_VAR)
        candidate = os.path.abspath(os.fspath(named or DEFAULT_DIR))
        if named or _holds_profiles(candidate):
            directory = candidate
    if directory is None and not any(k.startswith(VAR_PREFIX) and len(k) > len(VAR_PREFIX)
                                     for k in environ):
        return None
    try:
        from ..config import profiles as cfg  # noqa: PLC0415 - only when there is a profile
    except ImportError as exc:  # an injected agent on Python < 3.11 has no tomllib
        raise ProfileError("profiles need Python 3.11 or newer to read (%s)" % exc) from None
    from ..config.errors import ConfigError  # noqa: PLC0415

    try:
        store = cfg.ProfileStore(directory, environ)
        resolved = store.resolve(env, files=directory is not None)
        options = cfg.agent_options(resolved)
        sections = cfg.component_settings(resolved)
    except ConfigError as exc:
        raise ProfileError(_sentence(exc, env), exc.problems) from None
    path = resolved.files[0] if resolved.files else None
    options.pop("env", None)
    enabled = resolved.get("profiler.enabled", True)
    if not isinstance(enabled, bool):
        raise ProfileError("%s: profiler.enabled must be true or false, got %r."
                           % (_where(resolved, "profiler.enabled", path), enabled))
    if "tuner" in sections:
        for key, value in sections["tuner"].items():
            try:
                gc_tuning.check({key: value})
            except ValueError as exc:
                raise ProfileError("%s: %s." % (_where(resolved, "tuner." + key, path),
                                                str(exc).rstrip("."))) from None
    return options, sections, enabled, path


def _holds_profiles(directory: str) -> bool:
    """An implicit ``./profiles`` counts only when it holds a profile (a ``NAME.toml`` file): the
    name is common (a Django app, a package) and must not make the profile mandatory."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return False
    return any(n.endswith(".toml") and _ENV_NAME.match(n[:-5])
               and os.path.isfile(os.path.join(directory, n)) for n in entries)


def _where(resolved: Any, key: str, path: Optional[str]) -> str:
    layer = resolved.source(key)
    return layer.source if layer is not None and layer.kind in ("file", "env") else \
        (path or "profile")


def _sentence(exc: Any, env: str) -> str:
    """One sentence from a ConfigError: its message, plus the problems it does not already name."""
    message = str(exc).strip()
    extra = [str(p) for p in getattr(exc, "problems", ()) if p.source not in message]
    if extra:
        message = "%s: %s." % (message.rstrip("."), "; ".join(extra))
    if repr(env) not in message:
        message = "Profile %r: %s" % (env, message[:1].lower() + message[1:])
    return message


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """*base* overlaid with *over*, tables merged key by key (*over* wins)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out

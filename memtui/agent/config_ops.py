"""The ``config.get`` and ``config.apply`` ops: what the agent runs with, and a live retune of its
components, gc tuner and options, checked strictly first and optionally only previewed.

``config.apply`` args: ``settings`` (the complete set of profile sections; replaces the agent's),
``options`` (agent options that can change live), ``env`` (shorthand for ``options.env``),
``dry_run``. A dry run previews through each component's ``preview()`` and spends no rate-limit
token; a real one does, after the arguments checked out. The ``profiler`` and ``alerts`` sections
(automatic snapshots, alert lines, pressure actions) take effect from the next sample; what they
change is listed with the options as ``"alerts.pool_saturation": [old, new]``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .. import protocol
from . import gc_tuning, monitor
from .ops import Args, BadArgs, _short, op
from .startup import _ENV_NAME

SECTIONS = ("cache", "caches", "pool", "pools", "workers", "worker_pools", "execution", "tuner",
            "profiler", "alerts")
NAMED = ("caches", "pools", "worker_pools")
LIVE_OPTIONS = ("env", "interval", "memory_limit", "warning_pct", "critical_pct",
                "hysteresis_pct")
RESTART_OPTIONS = ("history", "trace", "trace_frames")  # accepted, reported as needing a restart


def _safe(value: Any) -> Any:
    return protocol.json_safe(value, max_nodes=5000)


@op("config.get", slow=True)  # settings() of a custom component might block: off the selector
def _config_get(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    components = {}
    for entry, obj in agent.registry.live():
        item: Dict[str, Any] = {"kind": entry.kind, "settings": None}
        read = getattr(obj, "settings", None)
        if callable(read):
            try:
                item["settings"] = _safe(read())
            except Exception as exc:  # a broken component must not break the reply
                item["error"] = "%s: %s" % (type(exc).__name__, exc)
        components[entry.name] = item
    return {"env": agent.options.env, "profile": agent.profile,
            "settings": _safe(agent.settings), "options": agent.options.to_json(),
            "components": components}


@op("config.apply", args=("settings", "options", "env", "dry_run"), mutating=True, slow=True)
def _config_apply(agent: Any, a: Args, ctx: Dict[str, Any]) -> Any:
    dry_run = a.bool("dry_run", False)
    sections = _sections(a)
    new_options, option_changes, errors = _options(agent, a)
    if not dry_run:
        a.gate()
    # profiler/alerts keys the agent acts on: listed with the options, as dotted names
    watched = monitor.changes(agent.settings, sections) if sections is not None else {}
    tuner: Dict[str, Any] = {}
    changed: Dict[str, Any] = {}
    if dry_run:
        if sections is not None:
            if "tuner" in sections:
                tuner = gc_tuning.plan(sections["tuner"])
            changed, component_errors = _preview(agent, sections)
            errors.update(component_errors)
    else:
        if option_changes:
            agent.set_options(new_options)
        if sections is not None:
            if "tuner" in sections:
                tuner = agent.apply_tuner(sections["tuner"])
            for name, result in _apply_components(agent, sections).items():
                if isinstance(result, dict) and "error" in result:
                    errors[name] = result["error"]
                elif result:
                    changed[name] = _safe(result)
        agent.events.emit("config", "warning" if errors else "info",
                          _summary(agent.options.env, changed, errors,
                                   dict(option_changes, **watched), tuner),
                          changed=changed, errors=errors, options=dict(option_changes, **watched),
                          tuner=tuner, peer_pid=ctx.get("peer_pid"))
    return {"dry_run": dry_run, "env": new_options.env, "changed": changed, "errors": errors,
            "options": dict(option_changes, **watched), "tuner": tuner}


def _apply_components(agent: Any, sections: Dict[str, Any]) -> Dict[str, Any]:
    """Replace the agent's settings (components registered later take them) and configure every
    live component; unlike apply_settings(), the tuner is left to the caller."""
    agent.settings = dict(sections)
    return {entry.name: agent.configure_component(entry.name, entry.kind, obj)
            for entry, obj in agent.registry.live()}


def _preview(agent: Any, sections: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, str]]:
    changed: Dict[str, Any] = {}
    errors: Dict[str, str] = {}
    for entry, obj in agent.registry.live():
        if not callable(getattr(obj, "configure", None)):
            continue
        values = agent.component_values(entry.name, entry.kind, obj, sections)
        if not values:
            continue
        preview = getattr(obj, "preview", None)
        if not callable(preview):
            errors[entry.name] = "cannot preview: %s has no preview() method" % type(obj).__name__
            continue
        try:
            diff = preview(values)
        except Exception as exc:
            errors[entry.name] = "%s: %s" % (type(exc).__name__, exc)
            continue
        if diff:
            changed[entry.name] = _safe(diff)
    return changed, errors


# -- argument checks ------------------------------------------------------------------------------
def _sections(a: Args) -> Optional[Dict[str, Any]]:
    raw = a.raw.get("settings")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadArgs("config.apply: 'settings' must be an object of profile sections")
    out: Dict[str, Any] = {}
    for section, body in raw.items():
        if section not in SECTIONS:
            raise BadArgs("config.apply: unknown section %r in 'settings'; the agent takes %s"
                          % (section[:64], ", ".join(SECTIONS)))
        if not isinstance(body, dict):
            raise BadArgs("config.apply: settings.%s must be an object" % section)
        if section in NAMED:
            for name, values in body.items():
                if not isinstance(values, dict):
                    raise BadArgs("config.apply: settings.%s.%s must be an object"
                                  % (section, name[:64]))
        if section == "tuner":
            try:
                body = gc_tuning.check(body, "settings.tuner")
            except ValueError as exc:
                raise BadArgs("config.apply: %s" % exc) from None
        out[section] = body
    problems = monitor.read(out)[2]
    if problems:
        raise BadArgs("config.apply: settings.%s" % "; settings.".join(problems))
    return out


def _options(agent: Any, a: Args) -> Tuple[Any, Dict[str, list], Dict[str, str]]:
    """(new AgentOptions, {option: [old, new]} that change live, {"option X": why not})."""
    raw = a.raw.get("options")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BadArgs("config.apply: 'options' must be an object of agent options")
    env = a.raw.get("env")
    if env is not None:
        if not isinstance(env, str) or not _ENV_NAME.match(env) or len(env) > 64:
            raise BadArgs("config.apply: 'env' must be an environment name (letters, digits, _ "
                          "and -), got %s" % _short(env))
        if "env" in raw and raw["env"] != env:
            raise BadArgs("config.apply: 'env' %r and options.env %s differ"
                          % (env, _short(raw["env"])))
        raw = dict(raw, env=env)
    for key in raw:
        if key not in LIVE_OPTIONS + RESTART_OPTIONS:
            raise BadArgs("config.apply: option %r cannot change in a running agent; live "
                          "options: %s" % (key[:64], ", ".join(LIVE_OPTIONS)))
    if "env" in raw and (not isinstance(raw["env"], str) or not _ENV_NAME.match(raw["env"])):
        raise BadArgs("config.apply: options.env must be an environment name, got %s"
                      % _short(raw["env"]))
    current = agent.options
    try:
        new = current.merged(raw)
    except ValueError as exc:
        raise BadArgs("config.apply: %s" % exc) from None
    errors: Dict[str, str] = {}
    for key in RESTART_OPTIONS:
        if key in raw and getattr(new, key) != getattr(current, key):
            errors["option " + key] = ("needs a restart: the agent runs with %r, asked for %r"
                                       % (getattr(current, key), getattr(new, key)))
    live = current.replace(**{k: getattr(new, k) for k in LIVE_OPTIONS})
    changes = {k: [getattr(current, k), getattr(live, k)] for k in LIVE_OPTIONS
               if getattr(current, k) != getattr(live, k)}
    return live, changes, errors


def _summary(env: str, changed: Dict[str, Any], errors: Dict[str, str],
             options: Dict[str, list], tuner: Dict[str, Any]) -> str:
    parts = ["%s %s -> %s" % (k, old, new) for k, (old, new) in sorted(options.items())]
    parts += ["%s %s -> %s" % (k, old, new) for k, (old, new) in sorted(tuner.items())]
    parts += ["%s %s" % (name, ", ".join("%s=%s" % kv for kv in sorted(diff.items())))
              for name, diff in sorted(changed.items())]
    text = "config applied (env %s): %s" % (env, "; ".join(parts) if parts else "nothing changed")
    if errors:
        text += "; %d refused: %s" % (len(errors), ", ".join(sorted(errors)))
    return text

"""Pushing a profile to a running agent with ``config.apply``: the plan (which environment, what is
sent, what the agent holds that the profile leaves alone), the result (what retuned live, what
waits for a restart, what was refused) and the lines that report it. Used by ``memtui config
push`` and the dashboard's Profiles pane; standard library only."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..agent.config_ops import LIVE_OPTIONS, RESTART_OPTIONS
from . import profiles as cprofiles
from .diff import render_value
from .errors import ConfigError, Problem
from .profiles import ProfileStore

__all__ = ["PushPlan", "PushRefused", "PushResult", "ReportLine", "agent_profile", "apply_plan",
           "plan_push", "push", "report_lines"]


class PushRefused(ConfigError):
    """Nothing was sent. ``reason`` says why: ``"other_env"`` (the agent runs another environment;
    ``force=True`` switches it), ``"no_env"`` (the agent names none; say which), ``"bad_env"``
    (not an environment name), ``"no_profile"`` (no ENV.toml; ``env`` names it) or ``"invalid"``
    (the resolved profile has problems, every one in ``problems``)."""

    def __init__(self, reason: str, message: str, problems: Sequence[Problem] = (),
                 env: Optional[str] = None) -> None:
        super().__init__(message, problems)
        self.reason = reason
        self.env = env


@dataclass(frozen=True)
class PushPlan:
    """What a push sends, worked out before anything is sent."""

    pid: Optional[int]
    pushed_env: str
    agent_env: Optional[str]  # what the agent runs (None: it does not say)
    files: Tuple[str, ...]  # the env's file, then the files it extends
    settings: Dict[str, Any]  # config.apply's settings: the complete profile sections
    options: Dict[str, Any]  # the agent options config.apply accepts
    not_set: Tuple[str, ...]  # keys the agent holds that the profile does not set (kept)
    next_start: Dict[str, Any]  # keys only a restart reads (profiler.enabled = false)

    @property
    def forced(self) -> bool:
        """True when this switches the agent to another environment."""
        return bool(self.agent_env) and self.agent_env != self.pushed_env


@dataclass(frozen=True)
class PushResult:
    """The agent's answer to one push (or its preview when ``dry_run``)."""

    plan: PushPlan
    dry_run: bool
    changed: Dict[str, Dict[str, Any]]  # component -> {key: new value}
    options: Dict[str, Any]  # agent option -> [old, new]
    tuner: Dict[str, Any]  # gc tuner setting -> [old, new]
    errors: Dict[str, str]  # what was refused, and why
    needs_restart: Dict[str, str]  # "option NAME" -> the agent's message
    reply: Dict[str, Any] = field(repr=False)  # config.apply's reply as it came

    @property
    def count(self) -> int:
        """How many settings changed (or would): options, tuner settings, component keys."""
        return (len(self.options) + len(self.tuner)
                + sum(len(c) for c in self.changed.values()))

    def to_json(self) -> Dict[str, Any]:
        """The reply with what the plan adds: ``memtui config push --json`` prints this."""
        return dict(self.reply, errors=dict(self.errors), needs_restart=dict(self.needs_restart),
                    not_set=list(self.plan.not_set), next_start=dict(self.plan.next_start),
                    pushed_env=self.plan.pushed_env, agent_env=self.plan.agent_env)


def agent_profile(client: Any) -> Tuple[Optional[str], Dict[str, Any]]:
    """(the environment the agent runs, the profile sections it holds); an agent without
    ``config.get`` says its environment in its hello."""
    from ..protocol import RemoteError  # noqa: PLC0415

    try:
        current = client.config_get()
    except RemoteError as exc:
        if exc.code != "unknown_op":
            raise
        info = getattr(client, "info", None) or client.request("hello")
        return info.get("env"), {}
    held = current.get("settings")
    return current.get("env"), held if isinstance(held, dict) else {}


def plan_push(client: Any, store: ProfileStore, env: Optional[str] = None,
              overrides: Sequence[str] = (), force: bool = False) -> PushPlan:
    """What pushing *env* (default: the environment the agent runs) would send, the profile
    resolved from *store* (its environment variables included) with *overrides* (``KEY=VALUE``).
    PushRefused when it must not be sent; ConfigError for bad overrides."""
    from . import validate  # noqa: PLC0415  (jsonschema: imported only when checking)

    pid = getattr(client, "pid", None) or getattr(client, "server_pid", None)
    running, held = agent_profile(client)
    if env is None and running is None:
        raise PushRefused("no_env", "PID %s does not say which environment it runs; pass --env "
                          "ENV." % pid)
    if env is not None and running is not None and env != running and not force:
        raise PushRefused("other_env", "Not pushed: PID %s runs %r, not %r; pass --force to "
                          "switch it to %s." % (pid, running, env, env), env=env)
    name = env or running
    try:
        name = cprofiles.active_env(name, store.environ)
    except ConfigError as exc:
        raise PushRefused("bad_env", str(exc), exc.problems, env=name) from None
    if name not in store.overlay and not os.path.isfile(store.path(name)):
        raise PushRefused("no_profile", "No profile %r in %s (profiles here: %s)." % (
            name, store.directory, ", ".join(store.names()) or "none") if os.path.isdir(
            store.directory) else "No profiles directory %s." % store.directory, env=name)
    resolved = store.resolve(name, overrides)
    problems = validate.check_env(store, resolved.env, overrides)
    if problems:
        raise PushRefused("invalid", "Not pushed: %s is invalid." % resolved.env, problems,
                          env=resolved.env)
    options = {k: v for k, v in cprofiles.agent_options(resolved).items()
               if k in LIVE_OPTIONS + RESTART_OPTIONS}
    settings = cprofiles.component_settings(resolved)
    not_set = sorted(set(cprofiles.flatten(held)) - set(cprofiles.flatten(settings)))
    next_start = ({"profiler.enabled": False}
                  if resolved.get("profiler.enabled", True) is False else {})
    return PushPlan(pid, resolved.env, running, tuple(resolved.files), settings, options,
                    tuple(not_set), next_start)


def apply_plan(client: Any, plan: PushPlan, dry_run: bool = False) -> PushResult:
    """Send *plan* with ``config.apply`` (a preview when *dry_run*). Options the agent reads only
    at start are reported in ``needs_restart``, not as errors."""
    reply = client.config_apply(plan.settings, options=plan.options, env=plan.pushed_env,
                                dry_run=dry_run)
    errors = dict(reply.get("errors") or {})
    restart = {k: errors.pop(k) for k in list(errors)
               if k.startswith("option ") and "needs a restart" in str(errors[k])}
    return PushResult(plan, bool(reply.get("dry_run", dry_run)), dict(reply.get("changed") or {}),
                      dict(reply.get("options") or {}), dict(reply.get("tuner") or {}), errors,
                      restart, dict(reply))


def push(client: Any, store: ProfileStore, env: Optional[str] = None,
         overrides: Sequence[str] = (), force: bool = False, dry_run: bool = False) -> PushResult:
    """plan_push, then apply_plan."""
    return apply_plan(client, plan_push(client, store, env, overrides, force), dry_run)


class ReportLine(NamedTuple):
    kind: str  # "change" | "restart" | "next_start" | "refused" | "not_set" | "summary"
    text: str


def report_lines(result: PushResult) -> List[ReportLine]:
    """What a push did (or would do), one line each, the summary last."""
    env, pid = result.plan.pushed_env, result.plan.pid
    out: List[ReportLine] = []
    for option, (old, new) in sorted(result.options.items()):
        out.append(ReportLine("change", "agent %s: %s → %s" % (option, old, new)))
    for name, (old, new) in sorted(result.tuner.items()):
        out.append(ReportLine("change", "tuner %s: %s → %s" % (name, old, new)))
    for component, changed in sorted(result.changed.items()):
        for key, new in sorted(changed.items()):
            out.append(ReportLine("change", "%s %s → %s" % (component, key, new)))
    lines = len(out)
    for option, message in sorted(result.needs_restart.items()):
        out.append(ReportLine("restart", "agent %s: %s" % (option.split(" ", 1)[-1], message)))
    for key in sorted(result.plan.next_start):
        out.append(ReportLine("next_start", "%s = %s: applies at the next start (memtui.start() "
                              "will start nothing in %s); this agent keeps running" % (
                                  key, render_value(result.plan.next_start[key]), env)))
    for component, message in sorted(result.errors.items()):
        out.append(ReportLine("refused", "%s refused: %s" % (component, message)))
    if result.plan.not_set:
        out.append(ReportLine("not_set", "Left as they are (the profile does not set them): %s."
                              % ", ".join(result.plan.not_set)))
    verb = "would change" if result.dry_run else "changed"
    summary = ("%s %d setting%s in PID %s (%s)" % (verb, lines, "s"[:lines != 1], pid, env)
               if lines else "Nothing to change in PID %s (%s)" % (pid, env))
    out.append(ReportLine("summary", summary[0].upper() + summary[1:] + (
        "; dry run, nothing applied." if result.dry_run else ".")))
    return out

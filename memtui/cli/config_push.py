"""``memtui config push``: check the resolved profile, send it to a running agent with
``config.apply`` and print what retuned live, what waits for a restart and what was refused."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import typer

from ..config import diff as cdiff
from ..config import profiles as cprofiles
from . import config_view as view
from ._common import EXIT_CHECK, UsageFailure, console, print_json
from .config_common import (CheckFailed, DryRunOpt, JsonOpt, ProfilesOpt, SetOpt, config_app,
                            env_name, profile_store, resolve_env)

LIVE_OPTIONS = ("env", "interval", "memory_limit", "warning_pct", "critical_pct", "hysteresis_pct")
# config.apply accepts these and answers "needs a restart" (memtui/agent/config_ops.py)
RESTART_OPTIONS = ("history", "trace", "trace_frames")


@config_app.command()
def push(pid: int = typer.Argument(..., min=1, help="PID of a process running the agent."),
         env: Optional[str] = typer.Option(None, "--env", "-e", metavar="ENV",
                                           help="Environment to push (default: the one the agent "
                                                "runs; $MEMTUI_ENV is not used)."),
         profiles: Optional[str] = ProfilesOpt,
         set_: Optional[List[str]] = SetOpt, dry_run: bool = DryRunOpt,
         force: bool = typer.Option(False, "--force", help="Push --env even though the agent "
                                                          "runs another environment."),
         socket: Optional[str] = typer.Option(None, "--socket", metavar="PATH"),
         json_: bool = JsonOpt) -> None:
    """Send the resolved profile to a running agent: components retune live.

    Keys the profile does not set keep the values the agent holds (a schema default never
    overrides what your code passed to a constructor); they are listed."""
    from ..client import AgentClient  # noqa: PLC0415
    from ..config import validate as cvalidate  # noqa: PLC0415

    store = profile_store(profiles)
    asked = env_name(store, env) if env else None
    with AgentClient(pid=pid, path=socket).connect() as client:
        running, held = _agent_profile(client)
        if asked is None and running is None:
            raise UsageFailure("PID %d does not say which environment it runs; pass --env ENV"
                               % pid)
        if asked is not None and running is not None and asked != running and not force:
            raise UsageFailure("Not pushed: PID %d runs %r, not %r; pass --force to switch it "
                               "to %s" % (pid, running, asked, asked))
        resolved = resolve_env(store, asked or running, set_)
        problems = cvalidate.check_env(store, resolved.env, set_ or ())
        if problems:
            raise CheckFailed(*(["Not pushed: %s is invalid." % resolved.env]
                                + [str(p._replace(source=view.short_path(p.source)))
                                   for p in problems]))
        options = {k: v for k, v in cprofiles.agent_options(resolved).items()
                   if k in LIVE_OPTIONS + RESTART_OPTIONS}
        settings = cprofiles.component_settings(resolved)
        not_set = sorted(set(cprofiles.flatten(held)) - set(cprofiles.flatten(settings)))
        next_start = ({"profiler.enabled": False}
                      if resolved.get("profiler.enabled", True) is False else {})
        if not json_:
            console.print("Pushing %s (%s) to PID %d, which runs %s%s." % (
                resolved.env, ", ".join(view.short_path(f) for f in resolved.files),
                pid, running or "an unnamed environment",
                " (--force)" if running and running != resolved.env else ""),
                style="dim", highlight=False, markup=False, soft_wrap=True)
        result = client.config_apply(settings, options=options, env=resolved.env,
                                     dry_run=dry_run)
    errors = dict(result.get("errors") or {})
    restart = {k: errors.pop(k) for k in list(errors)
               if k.startswith("option ") and "needs a restart" in str(errors[k])}
    result = dict(result, errors=errors, needs_restart=restart, not_set=not_set,
                  next_start=next_start, pushed_env=resolved.env, agent_env=running)
    if json_:
        print_json(result)
    else:
        _print_push(pid, resolved.env, result)
    if errors:
        raise typer.Exit(EXIT_CHECK)


def _agent_profile(client: Any) -> tuple:
    """(the environment the agent runs, the profile sections it holds)."""
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


def _print_push(pid: int, env: str, result: Dict[str, Any]) -> None:
    dry = result.get("dry_run")
    verb = "would change" if dry else "changed"
    lines = 0

    def say(text: str, style: str = "") -> None:
        console.print(text, style=style, highlight=False, markup=False, soft_wrap=True)

    for option, (old, new) in sorted((result.get("options") or {}).items()):
        say("agent %s: %s → %s" % (option, old, new))
        lines += 1
    for name, (old, new) in sorted((result.get("tuner") or {}).items()):
        say("tuner %s: %s → %s" % (name, old, new))
        lines += 1
    for component, changed in sorted((result.get("changed") or {}).items()):
        for key, new in sorted(changed.items()):
            say("%s %s → %s" % (component, key, new))
            lines += 1
    for option, message in sorted((result.get("needs_restart") or {}).items()):
        say("agent %s: %s" % (option.split(" ", 1)[-1], message), "yellow")
    for key in sorted(result.get("next_start") or {}):
        say("%s = %s: applies at the next start (memtui.start() will start nothing in %s); this "
            "agent keeps running" % (key, cdiff.render_value(result["next_start"][key]), env),
            "yellow")
    for component, message in sorted((result.get("errors") or {}).items()):
        say("%s refused: %s" % (component, message), "red")
    if result.get("not_set"):
        say("Left as they are (the profile does not set them): %s."
            % ", ".join(result["not_set"]), "yellow")
    summary = ("%s %d setting%s in PID %d (%s)" % (verb, lines, "s"[:lines != 1], pid, env)
               if lines else "Nothing to change in PID %d (%s)" % (pid, env))
    say(summary[0].upper() + summary[1:] + ("; dry run, nothing applied." if dry else "."), "dim")


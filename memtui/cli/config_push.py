"""``memtui config push``: check the resolved profile, send it to a running agent with
``config.apply`` and print what retuned live, what waits for a restart and what was refused.
The work is ``memtui.config.push``; this parses the arguments and prints."""
from __future__ import annotations

from typing import List, Optional

import typer

from ..config import ProfileStore
from ..config import push as cpush
from . import config_view as view
from ._common import EXIT_CHECK, UsageFailure, console, print_json
from .config_common import (CheckFailed, DryRunOpt, JsonOpt, ProfilesOpt, SetOpt, config_app,
                            env_name, need_profile, profile_store)

REPORT_STYLE = {"change": "", "restart": "yellow", "next_start": "yellow", "refused": "red",
                "not_set": "yellow", "summary": "dim"}


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

    store = profile_store(profiles)
    asked = env_name(store, env) if env else None
    with AgentClient(pid=pid, path=socket).connect() as client:
        try:
            plan = cpush.plan_push(client, store, asked, set_ or (), force=force)
        except cpush.PushRefused as exc:
            raise _refused(store, exc) from None
        if not json_:
            console.print("Pushing %s (%s) to PID %d, which runs %s%s." % (
                plan.pushed_env, ", ".join(view.short_path(f) for f in plan.files),
                pid, plan.agent_env or "an unnamed environment",
                " (--force)" if plan.forced else ""),
                style="dim", highlight=False, markup=False, soft_wrap=True)
        result = cpush.apply_plan(client, plan, dry_run=dry_run)
    if json_:
        print_json(result.to_json())
    else:
        for line in cpush.report_lines(result):
            console.print(line.text, style=REPORT_STYLE[line.kind], highlight=False,
                          markup=False, soft_wrap=True)
    if result.errors:
        raise typer.Exit(EXIT_CHECK)


def _refused(store: ProfileStore, exc: cpush.PushRefused) -> Exception:
    """A refusal as the CLI says it: an invalid profile exits 1 with every problem; the rest are
    usage errors (exit 2, one line)."""
    if exc.reason == "invalid":
        return CheckFailed(str(exc), *(str(p._replace(source=view.short_path(p.source)))
                                       for p in exc.problems))
    if exc.reason == "no_profile" and exc.env is not None:
        need_profile(store, exc.env)  # raises the usage error naming the directory
    return UsageFailure(str(exc))

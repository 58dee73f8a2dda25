"""Start the agent in a process we launched (``memtui run``).

The launcher puts ``memtui/agent/_site`` first on PYTHONPATH; its sitecustomize makes only the
``memtui`` package importable from the launcher's install (nothing else from that environment leaks
into the target) and calls :func:`autostart`.
"""
from __future__ import annotations

import os
import sys

ENV_AUTOSTART = "MEMTUI_AUTOSTART"
ENV_PACKAGE_PARENT = "MEMTUI_PACKAGE_PARENT"
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_site")


def launch_environ(base: dict, options_json: str = "") -> dict:
    """The environment for a child that should start with the agent running."""
    env = dict(base)
    parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = SITE_DIR + (os.pathsep + existing if existing else "")
    env[ENV_AUTOSTART] = "1"
    env[ENV_PACKAGE_PARENT] = parent
    if options_json:
        env["MEMTUI_AGENT_OPTIONS"] = options_json
    return env


def autostart() -> None:
    """Called from the sitecustomize shim at interpreter start-up when MEMTUI_AUTOSTART=1. Never
    raises: bad options leave the agent off, a profile it cannot use leaves the profile out; each
    is one line on stderr and the user's program runs either way."""
    if os.environ.get(ENV_AUTOSTART) != "1":
        return
    from memtui.agent import lifecycle, startup  # noqa: PLC0415

    try:
        plan = startup.plan(strict=False)
        if plan.note:
            sys.stderr.write("memtui: %s; the agent runs without the profile.\n"
                             % plan.note.rstrip("."))
        lifecycle.start_planned(plan)
    except Exception as exc:  # a bad option must not stop the user's program from running
        sys.stderr.write("memtui: agent not started: %s\n" % exc)


def injected() -> dict:
    """Called on a thread of its own by the code `memtui attach --inject` puts into a running
    process. Starts the agent as `memtui run` would (profile by MEMTUI_ENV/MEMTUI_PROFILES, a
    profile it cannot use is left out) and says what happened; never raises."""
    from memtui.agent import lifecycle, startup  # noqa: PLC0415
    from memtui.agent.core import disabled  # noqa: PLC0415

    with lifecycle._LOCK:  # two injections at once: one starts it, the other finds it
        agent = lifecycle.current()
        if agent is not None:
            return _serving({"result": "already"}, agent)
        try:
            plan = lifecycle.installed_plan() or startup.plan(strict=False)
            agent = lifecycle.start_planned(plan)
        except Exception as exc:  # bad MEMTUI_AGENT_OPTIONS in the target, say
            return {"result": "error", "error": "%s: %s" % (type(exc).__name__, exc)}
    if agent is None:
        why = "MEMTUI_DISABLE is set" if disabled() else \
            "its profile says profiler.enabled = false"
        return {"result": "off", "error": why}
    agent.events.emit("agent", "info", "agent started by injection")
    return _serving({"result": "started", "note": plan.note or ""}, agent)


def _serving(result: dict, agent) -> dict:
    """*result* with the agent's socket, or why it does not serve."""
    if agent.socket_path is not None:
        result["socket"] = agent.socket_path
    else:
        errors = [e for e in agent.errors if e[1] == "server"]
        result["error"] = errors[-1][2] if errors else "see its warning on the process's stderr"
    return result

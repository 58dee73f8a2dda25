"""The process-wide agent: ``start()``, ``install()`` (dormant until a signal), ``stop()``, the
shared component registry, and a new agent in a forked child.

None of it raises into the host after the call site: ``start()`` raises ValueError for bad
keywords, options or profile there; ``install()``, the ``memtui run`` bootstrap and the restart in a
forked child never raise. A profile they cannot use is reported (a RuntimeWarning from install(),
a line on stderr from the bootstrap, a "config" event either way) and the agent runs without it;
the forked child reuses its parent's resolved options and settings and reads no profile.
"""
from __future__ import annotations

import atexit
import json
import os
import signal as _signal
import threading
import time
import warnings
from typing import Any, Dict, Mapping, Optional, Union

from .. import paths
from . import startup
from .core import Agent, disabled
from .options import AgentOptions
from .registry import ComponentRegistry

# -- the process-wide agent ---------------------------------------------------------------------
_LOCK = threading.RLock()
_AGENT: Optional[Agent] = None
_REGISTRY = ComponentRegistry()
_INSTALLED: Dict[str, Any] = {}
_HOOKS = False


def _ensure_hooks() -> None:
    global _HOOKS
    if _HOOKS:
        return
    _HOOKS = True
    atexit.register(stop)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_child)


FORK_START_DELAY = 0.2  # seconds a forked child waits before starting its own agent


def _after_fork_child() -> None:
    """In a forked child: drop the parent's listener (never unlink it) and, shortly after, serve
    our own PID. The delay means a child that execs or exits at once (subprocess with
    preexec_fn, fork+exec) never binds a socket it would leave behind."""
    global _AGENT, _LOCK, _REGISTRY
    _LOCK = threading.RLock()  # the parent's may have been held by another thread at fork time
    old = _AGENT
    _AGENT = None
    if old is None or not old.running:
        _REGISTRY = _REGISTRY.clone()
        return
    try:
        old.abandon_in_child()
        _REGISTRY = old.registry.clone()
        opts = old.options
        if opts.socket_path:
            opts = opts.replace(socket_path=None, runtime_dir=os.path.dirname(opts.socket_path))
        threading.Thread(target=_start_forked, args=(opts, old.settings, old.profile),
                         name="memtui-fork-start", daemon=True).start()
    except Exception:  # the child must carry on whatever happens here
        pass


def _start_forked(opts: AgentOptions, settings: Dict[str, Any], profile: Optional[str]) -> None:
    global _AGENT
    time.sleep(FORK_START_DELAY)
    try:
        with _LOCK:
            if _AGENT is None:  # unless the child started one itself meanwhile
                _AGENT = Agent(opts, _REGISTRY, settings, profile).start()
    except Exception:
        pass


def current() -> Optional[Agent]:
    agent = _AGENT
    return agent if agent is not None and agent.running else None


def start(env: Optional[str] = None, profiles: Union[str, bool, None] = None,
          settings: Optional[Dict[str, Any]] = None, **options: Any) -> Optional[Agent]:
    """Start the agent in this process (idempotent) and return it; None when MEMTUI_DISABLE=1 or
    when the environment's profile says ``profiler.enabled = false``.

    *env* names the environment (else MEMTUI_ENV, else the env of MEMTUI_AGENT_OPTIONS, else
    "dev"); its profile ``ENV.toml`` is read from *profiles* (else MEMTUI_PROFILES, else
    ./profiles) when that directory exists or was named, and must then exist and parse. Without
    one the environment is a label and only ``MEMTUI__SECTION__KEY`` variables apply;
    ``profiles=False`` asks for that. Keyword options are those of AgentOptions
    (``interval="500ms"``, ``memory_limit="1GiB"``, ``trace=True`` ...); they beat
    MEMTUI_AGENT_OPTIONS, which beats the profile. *settings* are profile sections
    (``{"cache": {...}, "caches": {"users": {...}}, "pool": ..., "workers": ..., "execution": ...,
    "tuner": ...}``) laid over the profile's, applied to every component by name, including those
    created later. Anything bad raises ValueError here, at the call site, in one sentence;
    nothing later raises into the application.
    """
    if disabled():
        return None
    agent = current()
    if agent is not None:
        return agent
    return start_planned(startup.plan(env, profiles, settings, options))


def start_planned(plan: startup.Plan) -> Optional[Agent]:
    """Start the agent *plan* describes (see startup.plan); an agent already running wins."""
    global _AGENT
    if not plan.enabled or disabled():
        return None
    with _LOCK:
        if _AGENT is not None and _AGENT.running:
            return _AGENT
        _ensure_hooks()
        _AGENT = _launch(plan)
        return _AGENT


def _launch(plan: startup.Plan) -> Agent:
    agent = Agent(plan.options, _REGISTRY, plan.settings, plan.profile).start()
    if plan.note:
        agent.events.emit("config", "warning", "profile not loaded: %s" % plan.note,
                          env=plan.options.env)
    return agent


def stop() -> None:
    """Stop the agent and remove its socket. Safe to call at any time, any number of times."""
    global _AGENT
    with _LOCK:
        agent, _AGENT = _AGENT, None
    if agent is not None:
        try:
            agent.stop()
        except Exception:
            pass


def install(signal: Any = None, force: bool = False, env: Optional[str] = None,
            profiles: Union[str, bool, None] = None, settings: Optional[Mapping[str, Any]] = None,
            **options: Any) -> bool:
    """Install the agent dormant: only a signal handler, no thread, no socket, until the signal
    (default SIGUSR2) arrives. Returns False, with a RuntimeWarning, when it cannot install, and
    False when the profile says ``profiler.enabled = false``. The profile is read now, as
    start() reads it; one that cannot be used is a RuntimeWarning and the agent is installed
    without it. Bad keyword options raise ValueError.
    """
    if disabled():
        return False
    if signal is not None:
        options["signal"] = signal
    plan = startup.plan(env, profiles, settings, options, strict=False)
    if plan.note:
        warnings.warn("memtui.install(): %s; installed without the profile"
                      % plan.note.rstrip("."), RuntimeWarning, stacklevel=2)
    if not plan.enabled:
        return False
    opts = plan.options
    sig = opts.signal
    if threading.current_thread() is not threading.main_thread():
        warnings.warn("memtui.install() must be called from the main thread; not installed",
                      RuntimeWarning, stacklevel=2)
        return False
    previous = _signal.getsignal(sig)
    if previous not in (_signal.SIG_DFL, None) and previous is not _on_signal and not force:
        warnings.warn(
            "memtui.install(): %s already has a handler (%r); pass signal=... to use another "
            "signal, or force=True to replace it. Not installed." % (_signal.Signals(sig).name,
                                                                     previous),
            RuntimeWarning, stacklevel=2)
        return False
    try:
        _signal.signal(sig, _on_signal)
    except (OSError, ValueError) as exc:
        warnings.warn("memtui.install(): cannot handle signal %d: %s; not installed" % (sig, exc),
                      RuntimeWarning, stacklevel=2)
        return False
    _INSTALLED.clear()
    _INSTALLED.update(options=opts, signal=sig, previous=previous, plan=plan)
    _ensure_hooks()
    _write_dormant_marker(opts, sig)
    return True


def _write_dormant_marker(opts: AgentOptions, sig: int) -> None:
    """Tell `memtui attach` that this PID wakes its agent on *sig*: RUNTIME/PID.dormant, 0600,
    written whole (temp + rename), naming this process by start time and executable (an exec()
    keeps the PID and the start time, not the program). The attacher still checks the process
    really catches the signal before sending it; without the marker it never sends one."""
    try:
        # Always where `memtui attach` looks (not a runtime_dir= of install()'s own).
        directory = paths.ensure_private_dir(paths.runtime_dir())
        path = paths.dormant_path(os.getpid(), directory)
        exe = os.stat("/proc/self/exe") if os.path.exists("/proc/self/exe") else None
        body = json.dumps({"pid": os.getpid(), "signal": int(sig),
                           "start_ticks": paths.start_ticks(os.getpid()),
                           "exe": [exe.st_dev, exe.st_ino] if exe else None})
        tmp = "%s.%d.tmp" % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
        os.rename(tmp, path)
        _INSTALLED["marker"], _INSTALLED["marker_pid"] = path, os.getpid()
        if not _INSTALLED.get("marker_hook"):
            _INSTALLED["marker_hook"] = True
            atexit.register(_remove_dormant_marker)
    except Exception:  # noqa: BLE001 - a missing marker only means attach cannot wake us
        pass


def _remove_dormant_marker() -> None:
    path = _INSTALLED.get("marker")
    if path and _INSTALLED.get("marker_pid") == os.getpid():  # not a forked child's exit
        try:
            os.unlink(path)
        except OSError:
            pass


def _on_signal(signum: int, frame: Any) -> None:
    # A signal handler runs between bytecodes of the main thread: hand the work to a thread.
    if current() is not None or _INSTALLED.get("activating"):
        return
    _INSTALLED["activating"] = True
    threading.Thread(target=_activate, name="memtui-activate", daemon=True).start()


def _activate() -> None:
    global _AGENT
    try:
        with _LOCK:
            if _AGENT is None or not _AGENT.running:
                _AGENT = _launch(_INSTALLED["plan"])
                _AGENT.events.emit("agent", "info", "activated by signal %d" % _INSTALLED["signal"])
    except Exception:
        pass
    finally:
        _INSTALLED["activating"] = False


def installed_plan() -> Optional[startup.Plan]:
    """The plan install() resolved, if it was called: an agent started another way (by
    injection) uses it, so install()'s options and profile still apply."""
    return _INSTALLED.get("plan")


def installed_signal() -> Optional[int]:
    return _INSTALLED.get("signal")


def register(component: Any, name: Optional[str] = None, kind: Optional[str] = None,
             strong: bool = False) -> str:
    """Register a component with the process-wide registry (works before or after start)."""
    return _REGISTRY.register(component, name=name, kind=kind, strong=strong)


def unregister(component_or_name: Any) -> bool:
    return _REGISTRY.unregister(component_or_name)


def registry() -> ComponentRegistry:
    return _REGISTRY

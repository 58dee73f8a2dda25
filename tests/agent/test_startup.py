"""memtui.start() reads the environment's profile: which env, which directory, what beats what,
what is refused at the call site, and what install(), `memtui run` and a forked child do instead."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, wait_for
from memtui.agent.startup import ProfileError, plan
from memtui.client import AgentClient

PROFILE = """
[profiler]
interval = "2s"
history = 100

[alerts]
warning_pct = 70
critical_pct = 90

[cache]
max_entries = 50

[caches.users]
ttl = "30s"

[caches.orders]
max_entries = 7
"""


def write(directory, name, text):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name + ".toml")
    path.write_text(textwrap.dedent(text))
    return path


def test_active_env_argument_then_memtui_env_then_agent_options_then_dev(tmp_path):
    for name in ("a", "b", "c", "dev"):
        write(tmp_path, name, 'environment = "%s"\n' % name)
    opts = json.dumps({"env": "c"})
    d = str(tmp_path)
    assert plan("a", d, environ={"MEMTUI_ENV": "b", "MEMTUI_AGENT_OPTIONS": opts}).options.env == "a"
    assert plan(None, d, environ={"MEMTUI_ENV": "b", "MEMTUI_AGENT_OPTIONS": opts}).options.env == "b"
    p = plan(None, d, environ={"MEMTUI_AGENT_OPTIONS": opts})
    assert (p.options.env, p.profile) == ("c", str(tmp_path / "c.toml"))
    assert plan(None, d, environ={}).profile == str(tmp_path / "dev.toml")


def test_directory_argument_then_memtui_profiles_then_dot_profiles(tmp_path, monkeypatch):
    write(tmp_path / "arg", "dev", "[cache]\nmax_entries = 1\n")
    write(tmp_path / "var", "dev", "[cache]\nmax_entries = 2\n")
    write(tmp_path / "profiles", "dev", "[cache]\nmax_entries = 3\n")
    monkeypatch.chdir(tmp_path)
    var = {"MEMTUI_PROFILES": str(tmp_path / "var")}
    assert plan(profiles=str(tmp_path / "arg"), environ=var).settings["cache"] == {"max_entries": 1}
    assert plan(environ=var).settings["cache"] == {"max_entries": 2}
    assert plan(environ={}).settings["cache"] == {"max_entries": 3}
    assert plan(profiles=False, environ={}).settings == {}  # files off: a label only


def test_options_profile_under_agent_options_under_keywords(tmp_path):
    write(tmp_path, "dev", PROFILE)
    environ = {"MEMTUI_AGENT_OPTIONS": json.dumps({"interval": 1.5, "history": 50})}
    p = plan(profiles=str(tmp_path), options={"interval": "300ms"}, environ=environ)
    o = p.options
    assert (o.interval, o.history, o.warning_pct, o.critical_pct) == (0.3, 50, 70.0, 90.0)
    assert plan(profiles=str(tmp_path), environ={}).options.interval == 2.0


def test_only_keys_a_profile_sets_reach_components(tmp_path):
    write(tmp_path, "dev", PROFILE)
    p = plan(profiles=str(tmp_path), environ={})
    # [cache] says only max_entries: no schema default (policy lru, ttl 0 ...) comes along
    assert p.settings == {"cache": {"max_entries": 50},
                          "caches": {"users": {"ttl": "30s"}, "orders": {"max_entries": 7}}}


def test_env_vars_beat_the_file_and_settings_argument_beats_both(tmp_path):
    write(tmp_path, "dev", PROFILE)
    environ = {"MEMTUI__CACHE__MAX_ENTRIES": "25", "MEMTUI__CACHES__USERS__TTL": "1m"}
    p = plan(profiles=str(tmp_path), environ=environ,
             settings={"caches": {"users": {"max_entries": 3}}, "pool": {"max_size": 2}})
    assert p.settings["cache"] == {"max_entries": 25}
    assert p.settings["caches"]["users"] == {"ttl": "1m", "max_entries": 3}
    assert p.settings["caches"]["orders"] == {"max_entries": 7}
    assert p.settings["pool"] == {"max_size": 2}


def test_without_a_directory_the_env_is_a_label_and_env_vars_still_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./profiles here
    p = plan("staging", environ={"MEMTUI__CACHE__MAX_ENTRIES": "9"})
    assert (p.options.env, p.profile, p.settings) == ("staging", None,
                                                      {"cache": {"max_entries": 9}})


def test_an_implicit_profiles_dir_without_toml_files_is_not_a_profiles_dir(tmp_path, monkeypatch):
    """./profiles may be anything (a Django app package): only a named directory, or one holding
    a *.toml, makes the profile mandatory."""
    app = tmp_path / "profiles"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text("")
    (app / "migrations").mkdir()
    monkeypatch.chdir(tmp_path)
    p = plan(environ={"MEMTUI__CACHE__MAX_ENTRIES": "9"})
    assert (p.options.env, p.profile, p.settings) == ("dev", None, {"cache": {"max_entries": 9}})
    assert plan("prod", environ={}).profile is None
    for named in ({"profiles": str(app)}, {"environ": {"MEMTUI_PROFILES": str(app)}}):
        with pytest.raises(ProfileError, match="No profile 'dev'"):
            plan(**dict({"environ": {}}, **named))
    (app / "base.toml").write_text("")  # a profiles directory after all: dev.toml is missing
    with pytest.raises(ProfileError, match="No profile 'dev'"):
        plan(environ={})


def test_start_next_to_an_unrelated_profiles_package(tmp_path, runtime_dir):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "__init__.py").write_text("")
    out = run_python("""
        import memtui
        a = memtui.start()
        print(a is not None, a.options.env, a.profile)
        memtui.stop()
    """, tmp_path, {"MEMTUI_RUNTIME_DIR": runtime_dir})
    assert out.stdout.split() == ["True", "dev", "None"], out.stderr


@pytest.mark.parametrize("setup, words", [
    (lambda d: None, ["'prod'", "prod.toml", "does not exist"]),  # named directory, no file
    (lambda d: write(d, "prod", "[cache\n"), ["prod.toml", "not valid TOML"]),
    (lambda d: write(d, "prod", 'extends = "base"\n'), ["base.toml", "does not exist"]),
    (lambda d: write(d, "prod", '[profiler]\ninterval = "soon"\n'), ["prod.toml", "interval"]),
    (lambda d: write(d, "prod", '[tuner]\ngc_thresholds = "high"\n'),
     ["prod.toml", "gc_thresholds"]),
    (lambda d: write(d, "prod", '[profiler]\nenabled = "yes"\n'), ["prod.toml", "enabled"]),
])
def test_a_profile_that_cannot_be_used_is_one_valueerror_sentence_naming_it(tmp_path, setup,
                                                                           words):
    directory = tmp_path / "profiles"
    directory.mkdir()
    setup(directory)
    with pytest.raises(ValueError) as info:
        plan("prod", str(directory), environ={})
    assert isinstance(info.value, ProfileError)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_a_bad_env_var_names_the_variable(tmp_path):
    with pytest.raises(ValueError, match="MEMTUI__CACHE__MAX_ENTRIES.*integer"):
        plan(profiles=False, environ={"MEMTUI__CACHE__MAX_ENTRIES": "lots"})


def test_bad_keywords_settings_and_env_names_are_plain_valueerrors(tmp_path):
    with pytest.raises(ValueError, match="interval"):
        plan(profiles=False, options={"interval": "soon"}, environ={})
    with pytest.raises(ValueError, match="gc_thresholds"):
        plan(profiles=False, settings={"tuner": {"gc_thresholds": [1, 2, 3, 4]}}, environ={})
    with pytest.raises(ValueError, match="environment name"):
        plan("../etc", profiles=False, environ={})


def test_lenient_mode_leaves_a_bad_profile_out_and_says_why(tmp_path):
    write(tmp_path, "dev", '[profiler]\ninterval = "soon"\n[cache]\nmax_entries = 5\n')
    p = plan(profiles=str(tmp_path), options={"history": 30}, environ={}, strict=False)
    assert p.settings == {} and p.options.interval == 1.0 and p.options.history == 30
    assert "dev.toml" in p.note and p.profile is None


def test_profiler_disabled_in_the_profile_or_by_variable(tmp_path):
    write(tmp_path, "off", "[profiler]\nenabled = false\n")
    assert plan("off", str(tmp_path), environ={}).enabled is False
    assert plan(profiles=False, environ={"MEMTUI__PROFILER__ENABLED": "false"}).enabled is False


# -- real processes -------------------------------------------------------------------------------
def config_of(target):
    with AgentClient(pid=target.pid) as c:
        return c.config_get()


def test_profile_in_a_directory_configures_named_caches_at_start(start_target, tmp_path):
    write(tmp_path / "profiles", "staging", PROFILE)
    t = start_target("interval=0.3", env={"TARGET_CWD": str(tmp_path), "MEMTUI_ENV": "staging"})
    assert t.send('cache users {"max_entries": 1000, "policy": "lfu"}') == "ok users"
    assert t.send('cache orders {"max_bytes": 100000}') == "ok orders"
    got = config_of(t)
    assert got["env"] == "staging" and got["profile"] == str(tmp_path / "profiles" / "staging.toml")
    users, orders = (got["components"][n]["settings"] for n in ("users", "orders"))
    # the profile's [cache] default and [caches.users] override win; keys no profile layer sets
    # (policy, max_bytes) keep what the code passed
    assert users == {"policy": "lfu", "max_entries": 50, "max_bytes": None, "ttl": 30.0,
                     "tti": None}
    assert orders == {"policy": "lru", "max_entries": 7, "max_bytes": 100000, "ttl": None,
                      "tti": None}
    assert got["options"]["interval"] == 0.3  # keyword beats the profile's 2s
    assert got["options"]["history"] == 100 and got["options"]["warning_pct"] == 70


def test_env_var_beats_the_file_in_a_real_process(start_target, tmp_path):
    write(tmp_path, "dev", PROFILE)
    t = start_target(env={"MEMTUI_PROFILES": str(tmp_path), "MEMTUI__CACHE__MAX_ENTRIES": "25"})
    t.send("cache orders")
    t.send("cache other")
    comps = config_of(t)["components"]
    assert comps["other"]["settings"]["max_entries"] == 25
    assert comps["orders"]["settings"]["max_entries"] == 7  # [caches.orders] still beats [cache]
    t.send("fill other 40")
    assert t.send("len other") == "ok 25"


def run_python(code, cwd, env=None):
    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    full.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=str(cwd), env=full, timeout=30)


def test_missing_env_file_raises_valueerror_at_the_call_site(tmp_path, runtime_dir):
    write(tmp_path / "profiles", "dev", "")
    out = run_python("""
        import memtui, threading
        try:
            memtui.start(env="prod")
        except ValueError as exc:
            print(type(exc).__name__, "|", exc)
        print(memtui.current(), threading.active_count())
    """, tmp_path, {"MEMTUI_RUNTIME_DIR": runtime_dir})
    first, second = out.stdout.splitlines()
    assert first.startswith("ProfileError | No profile 'prod': ") and "prod.toml" in first
    assert "profiles here: dev" in first
    assert second == "None 1"  # nothing started
    assert not os.path.exists(runtime_dir) or not os.listdir(runtime_dir)


def test_profiler_enabled_false_returns_none_and_starts_nothing(tmp_path, runtime_dir):
    write(tmp_path, "prod", "[profiler]\nenabled = false\n")
    out = run_python("""
        import memtui, threading
        print(memtui.start(env="prod"), memtui.current(), threading.active_count())
    """, ROOT, {"MEMTUI_RUNTIME_DIR": runtime_dir, "MEMTUI_PROFILES": str(tmp_path)})
    assert out.stdout.split() == ["None", "None", "1"], out.stderr


def test_tuner_section_sets_gc_thresholds_and_freezes_once(start_target, tmp_path):
    write(tmp_path, "dev", "[tuner]\ngc_thresholds = [1234, 11, 12]\ngc_freeze = true\n")
    t = start_target(env={"MEMTUI_PROFILES": str(tmp_path)})
    assert t.send("gcthreshold") == "ok 1234 11 12"
    assert int(t.send("gcfrozen").split()[1]) > 0
    with AgentClient(pid=t.pid) as c:
        messages = [e["message"] for e in c.events()["events"] if e["kind"] == "config"]
    assert any("gc thresholds (700, 10, 10) -> (1234, 11, 12)" in m for m in messages), messages
    assert sum("gc.freeze()" in m for m in messages) == 1


def test_tuner_disabled_applies_nothing(start_target, tmp_path):
    write(tmp_path, "dev", "[tuner]\nenabled = false\ngc_thresholds = [1234, 11, 12]\n")
    t = start_target(env={"MEMTUI_PROFILES": str(tmp_path)})
    assert t.send("gcthreshold") == "ok 700 10 10"


def test_install_with_a_bad_profile_warns_and_installs_without_it(tmp_path, runtime_dir):
    write(tmp_path / "profiles", "dev", "[cache\n")
    out = run_python("""
        import os, signal, warnings, memtui, time
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ok = memtui.install()
        import json
        print(json.dumps([ok, [str(w.message) for w in caught if w.category is RuntimeWarning]]))
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(200):
            if memtui.current():
                break
            time.sleep(0.01)
        a = memtui.current()
        print(json.dumps([a.settings, a.profile, [e["message"] for e in a.events.since(0)["events"]
                                                  if e["kind"] == "config"]]))
    """, tmp_path, {"MEMTUI_RUNTIME_DIR": runtime_dir})
    assert out.returncode == 0, out.stderr
    (ok, warned), (settings, profile, events) = (json.loads(x) for x in out.stdout.splitlines())
    assert ok is True and len(warned) == 1, warned
    assert warned[0].startswith("memtui.install(): Profile 'dev': ") and \
        "dev.toml is not valid TOML" in warned[0] and \
        warned[0].endswith("; installed without the profile"), warned
    assert (settings, profile) == ({}, None)
    assert any(m.startswith("profile not loaded: ") for m in events), events


def test_install_reads_the_profile_and_the_activated_agent_uses_it(tmp_path, runtime_dir):
    write(tmp_path / "profiles", "dev", "[caches.users]\nmax_entries = 3\n")
    out = run_python("""
        import os, signal, memtui, time
        assert memtui.install()
        c = memtui.Cache(name="users")
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(200):
            if memtui.current():
                break
            time.sleep(0.01)
        print(c.settings()["max_entries"], memtui.current().profile.endswith("dev.toml"))
    """, tmp_path, {"MEMTUI_RUNTIME_DIR": runtime_dir})
    assert out.stdout.split() == ["3", "True"], out.stderr


def test_memtui_run_bootstrap_with_a_bad_profile_runs_without_it(tmp_path, runtime_dir):
    write(tmp_path / "profiles", "test", "[cache]\nmax_entries = 5\n")  # and no staging.toml
    from memtui.agent.bootstrap import launch_environ

    env = launch_environ({"PATH": "/usr/bin:/bin", "MEMTUI_RUNTIME_DIR": runtime_dir},
                         json.dumps({"env": "staging"}))
    out = subprocess.run([sys.executable, "-c", "import memtui; a = memtui.current(); "
                          "print(a is not None, a.options.env, a.settings)"],
                         capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=30)
    assert out.stdout.split() == ["True", "staging", "{}"], out.stderr
    assert out.stderr.startswith("memtui: No profile 'staging': ") and \
        out.stderr.rstrip().endswith("the agent runs without the profile."), out.stderr
    assert len(out.stderr.splitlines()) == 1


def test_memtui_run_env_picks_the_profile(tmp_path, runtime_dir):
    write(tmp_path / "profiles", "staging", "[caches.users]\nmax_entries = 4\n")
    from memtui.agent.bootstrap import launch_environ

    env = launch_environ({"PATH": "/usr/bin:/bin", "MEMTUI_RUNTIME_DIR": runtime_dir},
                         json.dumps({"env": "staging"}))
    out = subprocess.run([sys.executable, "-c", "import memtui; c = memtui.Cache(name='users');"
                          " print(memtui.current().options.env, c.settings()['max_entries'])"],
                         capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=30)
    assert out.stdout.split() == ["staging", "4"], out.stderr


def test_forked_child_keeps_the_parents_profile_without_reading_it_again(start_target, tmp_path):
    path = write(tmp_path, "dev", "[caches.users]\nmax_entries = 6\n")
    t = start_target(env={"MEMTUI_PROFILES": str(tmp_path)})
    t.send("cache users")
    path.write_text("[cache\n")  # broken now: the child must not care
    lines = [t.send("fork 20"), t.readline()]
    _, pid, sock = next(line for line in lines if line.startswith("child")).split()
    assert sock != "-"
    wait_for(lambda: os.path.exists(sock), message="child socket")
    try:
        with AgentClient(pid=int(pid)) as c:
            got = c.config_get()
    finally:
        os.kill(int(pid), 9)
    assert got["settings"] == {"caches": {"users": {"max_entries": 6}}}
    assert got["profile"] == str(path)
    assert got["components"]["users"]["settings"]["max_entries"] == 6

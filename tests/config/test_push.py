"""memtui.config.push against real agents: the plan, the preview, the live retune, the refusals
and the report lines the CLI and the dashboard print."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from memtui.client import AgentClient
from memtui.config import ConfigError, ProfileStore, edit
from memtui.config import push as cpush


@pytest.fixture
def pdir(tmp_path):
    target = tmp_path / "profiles"
    shutil.copytree(ROOT / "profiles", target)
    return target


def store_of(pdir, **environ) -> ProfileStore:
    return ProfileStore(str(pdir), environ=environ)  # no MEMTUI__* of the developer's


def test_plan_preview_then_push_retunes_a_live_cache(start_target, pdir):
    t = start_target("interval=0.2", "env=dev")
    assert t.send('cache users {"max_entries": 5000}') == "ok users"
    assert t.send("fill users 3000") == "ok 3000"
    with AgentClient(pid=t.pid) as client:
        plan = cpush.plan_push(client, store_of(pdir))
        assert (plan.pid, plan.pushed_env, plan.agent_env, plan.forced) == (t.pid, "dev", "dev",
                                                                            False)
        assert plan.files == (str(pdir / "dev.toml"), str(pdir / "base.toml"))
        assert plan.settings["caches"]["users"] == {"max_entries": 2000}
        assert plan.options["interval"] == "500ms" and plan.options["env"] == "dev"
        preview = cpush.apply_plan(client, plan, dry_run=True)
        assert preview.dry_run and preview.changed["users"]["max_entries"] == 2000
        assert preview.options["interval"] == [0.2, 0.5]
        assert t.send("len users") == "ok 3000"  # a preview changes nothing
        lines = cpush.report_lines(preview)
        assert ("change", "users max_entries → 2000") in lines
        assert lines[-1] == ("summary", "Would change %d settings in PID %d (dev); dry run, "
                             "nothing applied." % (preview.count, t.pid))
        done = cpush.apply_plan(client, plan)
        assert not done.dry_run and done.errors == {}
        assert done.changed["users"]["max_entries"] == 2000
        assert t.send("len users") == "ok 2000"
        again = cpush.push(client, store_of(pdir), overrides=["caches.users.max_entries=2000"])
        assert again.changed == {} and again.options == {}
        assert cpush.report_lines(again)[-1] == (
            "summary", "Nothing to change in PID %d (dev)." % t.pid)


def test_refusals_are_config_errors_and_send_nothing(start_target, pdir):
    t = start_target("interval=0.2", "env=prod")
    assert t.send('cache users {"max_entries": 50}') == "ok users"
    assert t.send("fill users 40") == "ok 40"
    with AgentClient(pid=t.pid) as client:
        store = store_of(pdir)
        with pytest.raises(cpush.PushRefused) as other:
            cpush.plan_push(client, store, "dev")
        assert isinstance(other.value, ConfigError) and other.value.reason == "other_env"
        assert "runs 'prod', not 'dev'" in str(other.value)
        forced = cpush.plan_push(client, store, "dev", force=True)
        assert forced.forced and forced.pushed_env == "dev" and forced.agent_env == "prod"
        with pytest.raises(cpush.PushRefused) as missing:
            cpush.plan_push(client, store, "nope", force=True)
        assert missing.value.reason == "no_profile" and missing.value.env == "nope"
        assert "profiles here: base, dev, prod, test" in str(missing.value)
        with pytest.raises(ConfigError) as bad_override:
            cpush.plan_push(client, store, overrides=["cache.ttl=soon"])
        assert [p.source for p in bad_override.value.problems] == ["--set"]
        (pdir / "prod.toml").write_text('extends = "base"\n[pool]\nmin_size = 9\nmax_size = 2\n')
        with pytest.raises(cpush.PushRefused) as invalid:
            cpush.push(client, store)
        assert invalid.value.reason == "invalid" and str(invalid.value) == (
            "Not pushed: prod is invalid.")
        assert [str(p) for p in invalid.value.problems] == [
            "%s::$.pool.min_size: min_size 9 is above max_size 2" % (pdir / "prod.toml")]
        calls = client.config_get()
    assert t.send("len users") == "ok 40"  # nothing reached the agent
    assert calls["env"] == "prod"


def test_env_vars_of_the_store_are_pushed(start_target, pdir):
    t = start_target("interval=0.2", "env=prod")
    with AgentClient(pid=t.pid) as client:
        plan = cpush.plan_push(client, store_of(pdir, MEMTUI__ALERTS__WARNING_PCT="70"))
        assert plan.options["warning_pct"] == 70
        assert cpush.plan_push(client, store_of(pdir)).options["warning_pct"] == 85


def test_restart_only_options_next_start_and_keys_left_alone(start_target, pdir):
    t = start_target("interval=0.2", "env=prod", "profiles=" + str(pdir))
    store = store_of(pdir)
    edit.set_values(store, "prod", ["profiler.trace=true", "profiler.enabled=false"])
    edit.unset_values(store, "prod", ["caches.users"])
    with AgentClient(pid=t.pid) as client:
        result = cpush.push(client, store)
    assert result.errors == {}
    assert set(result.needs_restart) == {"option trace"}  # it started with prod's history
    assert result.plan.next_start == {"profiler.enabled": False}
    assert result.plan.not_set == ("caches.users.max_entries",)  # the agent started with it
    kinds = [line.kind for line in cpush.report_lines(result)]
    assert kinds.count("restart") == 1 and "next_start" in kinds and "not_set" in kinds
    assert "refused" not in kinds
    doc = result.to_json()
    json.dumps(doc)  # plain JSON, as `memtui config push --json` prints it
    assert doc["pushed_env"] == doc["agent_env"] == "prod"
    assert doc["not_set"] == ["caches.users.max_entries"] and doc["errors"] == {}


def test_the_push_library_needs_no_cli_or_ui_package():
    code = ("import sys, json; import memtui.config.push; "
            "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(ROOT), check=True).stdout
    assert not set(json.loads(out)) & {"textual", "typer", "rich", "click", "tomlkit",
                                        "jsonschema"}

"""`memtui config …` through the real entry point, on copies of the shipped profiles."""
from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROFILES = ROOT / "profiles"


@pytest.fixture
def pdir(tmp_path):
    target = tmp_path / "profiles"
    shutil.copytree(PROFILES, target)
    return target


@pytest.fixture
def cfg(cli, pdir):
    """cfg(*args, env=None) runs `memtui config ARGS… -p PDIR` with no MEMTUI_ENV/MEMTUI__*."""

    def run(*args: str, env=None, profiles=True, **kw):
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith("MEMTUI__") and k not in ("MEMTUI_ENV", "MEMTUI_PROFILES")}
        clean["PYTHONPATH"] = str(ROOT)
        clean["COLUMNS"] = "200"
        if env:
            clean.update(env)
        extra = ["-p", str(pdir)] if profiles else []
        return cli("config", *args, *extra, env=clean, **kw)

    return run


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


# -- shipped profiles ------------------------------------------------------------------------------
def test_shipped_profiles_are_valid_and_differ_as_intended(cfg):
    r = cfg("validate", "--all")
    assert r.returncode == 0, r.stdout + r.stderr
    values = {}
    for env in ("dev", "test", "prod"):
        out = cfg("show", "--json", "--env", env)
        assert out.returncode == 0, out.stderr
        values[env] = {k: v["value"] for k, v in json.loads(out.stdout)["keys"].items()}
    # dev: low limits and fast sampling; prod: high limits, compression on, slow sampling
    assert values["dev"]["profiler.interval"] == "500ms"
    assert values["prod"]["profiler.interval"] == "5s"
    assert values["prod"]["cache.compression"] > 0 == values["dev"]["cache.compression"]
    assert values["prod"]["profiler.trace"] is False
    order = ["dev", "test", "prod"]
    limits = [values[e]["alerts.memory_limit"] for e in order]
    assert limits == ["1GiB", "4GiB", "16GiB"]
    assert [values[e]["workers.max_workers"] for e in order] == [4, 16, 64]
    for env in order:  # each names itself and starts from base
        data = tomllib.loads((PROFILES / (env + ".toml")).read_text())
        assert data["environment"] == env and data["extends"] == "base"
        assert (PROFILES / (env + ".toml")).read_text().count("#") >= 5  # commented


# -- reading ---------------------------------------------------------------------------------------
def test_show_reports_value_type_and_source(cfg, pdir):
    r = cfg("show", "--json", "--env", "prod", "--set", "cache.ttl=90s",
            env={"MEMTUI__WORKERS__QUEUE_SIZE": "77"})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    keys = doc["keys"]
    assert doc["env"] == "prod" and doc["files"] == [str(pdir / "prod.toml"), str(pdir / "base.toml")]
    assert keys["cache.ttl"] == {"value": "90s", "type": "duration", "source": "--set", "kind": "set"}
    assert keys["workers.queue_size"]["value"] == 77
    assert keys["workers.queue_size"]["source"] == "MEMTUI__WORKERS__QUEUE_SIZE"
    assert keys["pool.max_size"]["source"] == str(pdir / "prod.toml")
    assert keys["alerts.cache_hit_rate_warning"]["source"] == str(pdir / "base.toml")
    assert keys["profiler.retention"]["kind"] == "file"
    assert keys["tuner.max_concurrent_requests"]["kind"] == "default"
    table = cfg("show", "--env", "prod")
    assert table.returncode == 0 and "profiles/prod.toml" in table.stdout
    flat = cfg("show", "--flat", "--env", "dev").stdout.splitlines()
    assert 'profiler.interval = "500ms"' in flat and "workers.max_workers = 4" in flat


def test_get_prints_the_raw_value_and_exits_1_when_missing(cfg):
    assert cfg("get", "workers.max_workers", "--env", "prod").stdout == "64\n"
    assert cfg("get", "caches.sessions.ttl").stdout == "20s\n"
    # a per-name key nobody sets inherits its section default
    assert cfg("get", "caches.users.ttl", "--set", "cache.ttl=5m").stdout == "5m\n"
    assert cfg("get", "tuner.gc_thresholds", "--env", "prod").stdout == "[50000,20,20]\n"
    assert cfg("get", "profiler.trace").stdout == "false\n"
    missing = cfg("get", "custom.nothing_here")
    assert missing.returncode == 1 and missing.stdout == ""
    assert "custom.nothing_here has no value in dev" in missing.stderr
    typo = cfg("get", "cache.max_entires")
    assert typo.returncode == 1 and "did you mean cache.max_entries?" in typo.stderr


def test_precedence_set_over_env_var_over_file_over_base_over_default(cfg):
    key = "alerts.warning_pct"
    assert cfg("get", key, "--env", "prod").stdout == "85\n"  # prod.toml over base.toml
    assert cfg("get", key, "--env", "dev").stdout == "80\n"  # base.toml
    assert cfg("get", "alerts.hysteresis_pct").stdout == "5\n"  # schema default
    env = {"MEMTUI__ALERTS__WARNING_PCT": "70"}
    assert cfg("get", key, "--env", "prod", env=env).stdout == "70\n"
    assert cfg("get", key, "--env", "prod", "--set", key + "=60.5", env=env).stdout == "60.5\n"


def test_active_env_from_flag_then_env_var_then_dev(cfg):
    assert cfg("get", "environment").stdout == "dev\n"
    assert cfg("get", "environment", env={"MEMTUI_ENV": "test"}).stdout == "test\n"
    assert cfg("get", "environment", "--env", "prod", env={"MEMTUI_ENV": "test"}).stdout == "prod\n"


def test_profiles_dir_from_env_var(cfg, pdir):
    r = cfg("get", "workers.max_workers", "--env", "test", profiles=False,
            env={"MEMTUI_PROFILES": str(pdir)})
    assert r.stdout == "16\n", r.stderr


def test_env_var_coercion_errors_are_reported_all_at_once(cfg):
    r = cfg("show", env={"MEMTUI__CACHE__MAX_ENTRIES": "lots", "MEMTUI__PROFILER__TRACE": "maybe",
                         "MEMTUI__CACHE__NOPE": "1"})
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert "env:MEMTUI__CACHE__MAX_ENTRIES::$.cache.max_entries: expected an integer, got 'lots'" \
        in lines
    assert "env:MEMTUI__PROFILER__TRACE::$.profiler.trace: expected true or false, got 'maybe'" \
        in lines
    assert any(line.startswith("env:MEMTUI__CACHE__NOPE::$.cache.nope: unknown key") for line in lines)
    assert len(lines) == 3


def test_env_vars_are_typed_by_the_schema(cfg):
    env = {"MEMTUI__TUNER__GC_THRESHOLDS": "1000,20,30", "MEMTUI__PROFILER__TRACE": "yes",
           "MEMTUI__CACHE__MAX_BYTES": "64MiB", "MEMTUI__CUSTOM__RETRIES": "3"}
    doc = json.loads(cfg("show", "--json", env=env).stdout)["keys"]
    assert doc["tuner.gc_thresholds"]["value"] == [1000, 20, 30]
    assert doc["profiler.trace"]["value"] is True
    assert doc["cache.max_bytes"]["value"] == "64MiB"
    assert doc["custom.retries"]["value"] == 3


def test_explain_shows_the_whole_chain_with_the_winner(cfg, pdir):
    r = cfg("explain", "alerts.warning_pct", "--env", "prod",
            env={"MEMTUI__ALERTS__WARNING_PCT": "70"})
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if "│" in line]
    assert [line.split("│")[1].strip() for line in lines] == [
        "--set", "MEMTUI__ALERTS__WARNING_PCT", str(pdir / "prod.toml"), str(pdir / "base.toml"),
        "schema default"]
    assert [line.split("│")[2].strip() for line in lines] == ["not set", "70", "85", "80", "80"]
    winner = [line for line in lines if line.startswith("▶")]
    assert len(winner) == 1 and "MEMTUI__ALERTS__WARNING_PCT" in winner[0] and "70" in winner[0]
    assert "Memory warning at this percent" in r.stdout
    named = cfg("explain", "caches.users.ttl", "--set", "cache.ttl=5m")
    assert "inherits cache.ttl" in named.stdout and '"5m"  (--set)' in named.stdout
    bad = cfg("explain", "alerts.warn_pct")
    assert bad.returncode == 1 and "Unknown key" in bad.stderr


def test_envs_lists_environments_and_bases(cfg, pdir):
    doc = json.loads(cfg("envs", "--json").stdout)
    rows = {r["name"]: r for r in doc["profiles"]}
    assert set(rows) == {"base", "dev", "test", "prod"}
    assert rows["base"]["base"] and not rows["dev"]["base"]
    assert rows["prod"]["extends"] == "base" and rows["dev"]["active"]
    assert "(base)" in cfg("envs").stdout


def test_schema_prints_the_json_schema_and_a_key_table(cfg):
    doc = json.loads(cfg("schema", profiles=False).stdout)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    keys = cfg("schema", "--keys", profiles=False).stdout
    assert "cache.max_entries" in keys and "caches.NAME.*" in keys


def test_secrets_are_masked_unless_asked(cfg, pdir):
    with open(pdir / "dev.toml", "a") as fh:
        fh.write('db_password = "hunter2"\n')  # lands in the [custom] table, the file's last
    assert cfg("get", "custom.db_password").stdout == "********\n"
    assert cfg("get", "custom.db_password", "--show-secrets").stdout == "hunter2\n"
    for args in (("show",), ("show", "--json"), ("export",), ("export", "-f", "json"),
                 ("diff",), ("explain", "custom.db_password")):
        out = cfg(*args).stdout
        assert "hunter2" not in out, args
    assert "hunter2" in cfg("export", "--show-secrets").stdout
    assert cfg("get", "custom.log_level").stdout == "debug\n"  # not a secret name


# -- diff ------------------------------------------------------------------------------------------
def test_diff_all_envs_exit_1_and_formats(cfg):
    table = cfg("diff")
    assert table.returncode == 1
    header = table.stdout.splitlines()[0]
    assert header.split()[:1] == ["key"] and all(e in header for e in ("dev", "test", "prod"))
    doc = json.loads(cfg("diff", "--format", "json").stdout)
    assert doc["envs"] == ["dev", "prod", "test"] and doc["differs"] is True
    assert "profiler.interval" in doc["differing"]
    assert "alerts.critical_pct" not in doc["differing"]  # 95 everywhere
    assert doc["keys"]["workers.max_workers"]["values"] == {"dev": 4, "prod": 64, "test": 16}
    uni = cfg("diff", "dev", "prod", "--format", "unified")
    assert uni.returncode == 1
    assert uni.stdout.startswith("--- dev\n+++ prod\n")
    assert '-profiler.interval = "500ms"\n+profiler.interval = "5s"\n' in uni.stdout


def test_diff_compares_by_magnitude_and_exits_0_when_same(cfg, pdir):
    (pdir / "a.toml").write_text('environment = "a"\n[cache]\nmax_bytes = "1KiB"\nttl = "2m"\n')
    (pdir / "b.toml").write_text('environment = "b"\n[cache]\nmax_bytes = 1024\nttl = 120\n')
    r = cfg("diff", "a", "b", "--format", "json")
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)["differing"] == []
    assert cfg("diff", "a").returncode == 2  # needs two


# -- export ----------------------------------------------------------------------------------------
def test_export_writes_the_resolved_profile(cfg, tmp_path):
    out = tmp_path / "prod.toml"  # a profile names its environment after its file
    r = cfg("export", "--env", "prod", "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = tomllib.loads(out.read_text())
    assert data["workers"]["max_workers"] == 64 and data["alerts"]["critical_pct"] == 95
    assert data["tuner"]["gc_thresholds"] == [50000, 20, 20]
    assert data["environment"] == "prod"
    js = json.loads(cfg("export", "--env", "prod", "--format", "json").stdout)
    assert js["workers"]["max_workers"] == 64
    # the export is itself a valid profile
    assert cfg("validate", str(out)).returncode == 0


# -- validate --------------------------------------------------------------------------------------
BROKEN = """# broken on purpose
extends = "base"
environment = "dev"

[cache]
max_entires = 5          # a typo
policy = "mru"
max_bytes = "lots"

[pools.db]
max_size = 5000

[alerts]
warning_pct = 99         # above base's critical_pct 95
"""


def test_validate_reports_every_error_with_file_and_path(cfg, pdir):
    (pdir / "dev.toml").write_text(BROKEN)
    r = cfg("validate", "--env", "dev")
    assert r.returncode == 1
    lines = r.stdout.strip().splitlines()
    dev = str(pdir / "dev.toml")
    expected_paths = ["$.cache.max_entires", "$.cache.policy", "$.cache.max_bytes",
                      "$.pools.db.max_size", "$.alerts.warning_pct"]
    for path in expected_paths:
        assert any(line.startswith("%s::%s: " % (dev, path)) for line in lines), (path, lines)
    assert any("did you mean max_entries?" in line for line in lines)
    js = json.loads(cfg("validate", "--env", "dev", "--format", "json").stdout)
    assert js["valid"] is False
    assert {p["path"] for p in js["problems"]} >= set(expected_paths)
    assert all(p["source"] == dev for p in js["problems"])
    # a file alone, and --all covering it too
    alone = cfg("validate", str(pdir / "dev.toml"), profiles=False)
    assert alone.returncode == 1 and "$.cache.policy" in alone.stdout
    assert cfg("validate", "--all").returncode == 1
    assert cfg("validate", "--env", "prod").returncode == 0


def test_validate_toml_syntax_error_names_the_line(cfg, pdir):
    (pdir / "test.toml").write_text('environment = "test"\n[cache]\nmax_entries = = 3\n')
    r = cfg("validate", "--env", "test")
    assert r.returncode == 1
    assert "test.toml::$: not valid TOML" in r.stdout and "line 3" in r.stdout


# -- set / unset / reset / apply -------------------------------------------------------------------
def test_set_edits_in_place_keeps_comments_and_get_reads_it_back(cfg, pdir):
    path = pdir / "dev.toml"
    before = path.read_text()
    r = cfg("set", "workers.max_workers=6", "caches.orders.ttl=90s", "--env", "dev")
    assert r.returncode == 0, r.stderr
    assert "workers.max_workers: 4 → 6" in r.stdout
    after = path.read_text()
    assert "max_workers = 6" in after and "[caches.orders]" in after
    # every comment and every other line survived
    assert [x for x in before.splitlines() if "max_workers" not in x] == \
        [x for x in after.splitlines() if "max_workers" not in x][:len(before.splitlines()) - 1]
    assert (pdir / "dev.toml.bak").read_text() == before
    assert cfg("get", "workers.max_workers").stdout == "6\n"
    assert cfg("get", "caches.orders.ttl").stdout == "90s\n"


def test_set_dry_run_writes_nothing_and_shows_the_diff(cfg, pdir):
    path = pdir / "dev.toml"
    before = path.read_bytes()
    r = cfg("set", "pool.max_size=8", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "-max_size = 4" in r.stdout and "+max_size = 8" in r.stdout
    assert "Dry run" in r.stdout
    assert path.read_bytes() == before and not (pdir / "dev.toml.bak").exists()


@pytest.mark.parametrize("assignment, path", [
    ("cache.max_entries=-1", "$.cache.max_entries"),
    ("cache.policy=mru", "$.cache.policy"),
    ("cache.max_entires=3", "$.cache.max_entires"),
    ("alerts.warning_pct=99", "$.alerts.warning_pct"),
    ("profiler.trace=maybe", "$.profiler.trace"),
])
def test_set_refuses_bad_values_and_leaves_the_file_byte_identical(cfg, pdir, assignment, path):
    before = (pdir / "dev.toml").read_bytes()
    r = cfg("set", assignment)
    assert r.returncode == 1, r.stdout
    assert path + ":" in r.stderr and "Traceback" not in r.stderr
    assert (pdir / "dev.toml").read_bytes() == before
    assert not (pdir / "dev.toml.bak").exists()


def test_set_custom_keys_are_free_form(cfg, pdir):
    assert cfg("set", "custom.feature_x=true", "custom.retries=3").returncode == 0
    assert cfg("get", "custom.feature_x").stdout == "true\n"
    assert cfg("get", "custom.retries").stdout == "3\n"


def test_failed_write_is_one_line_exit_2_and_changes_nothing(cfg, pdir):
    # the profiles path is a file, not a directory: nothing can be written or created
    bogus = pdir / "notadir"
    bogus.write_text("x")
    r = cfg("set", "pool.max_size=8", profiles=False, env={"MEMTUI_PROFILES": str(bogus)})
    assert r.returncode in (1, 2) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert bogus.read_text() == "x"


def test_unset_and_reset(cfg, pdir):
    assert cfg("unset", "workers.queue_size").returncode == 0
    assert cfg("get", "workers.queue_size").stdout == "1000\n"  # schema default now
    missing = cfg("unset", "workers.queue_size")
    assert missing.returncode == 1 and "not set in" in missing.stderr
    # alerts.warning_pct comes from base (80 = default); prod sets 85: reset removes prod's
    assert cfg("reset", "alerts.warning_pct", "--env", "prod").returncode == 0
    assert cfg("get", "alerts.warning_pct", "--env", "prod").stdout == "80\n"
    # base sets pool.min_size = 1; resetting it in dev writes the default 0 explicitly
    assert cfg("reset", "pool.min_size", "--env", "dev").returncode == 0
    assert cfg("get", "pool.min_size", "--env", "dev").stdout == "0\n"
    assert "min_size = 0" in (pdir / "dev.toml").read_text()
    # everything: base.toml's [caches.sessions] has no default to go back to, so that is refused
    before = (pdir / "test.toml").read_bytes()
    refused = cfg("reset", "--env", "test")
    assert refused.returncode == 1 and "caches.sessions.ttl is set in base.toml" in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == "Nothing written to %s." % (
        pdir / "test.toml")
    assert (pdir / "test.toml").read_bytes() == before
    # every section that has defaults: the resolved profile equals the schema defaults again
    sections = ("profiler", "pool", "cache", "workers", "execution", "tuner", "alerts")
    assert cfg("reset", *sections, "--env", "test").returncode == 0
    doc = json.loads(cfg("show", "--json", "--env", "test").stdout)["keys"]
    non_default = {k: v for k, v in doc.items() if v["kind"] != "default" and k != "environment"
                   and not k.startswith(("caches.", "pools.", "worker_pools.", "custom."))}
    from memtui.config import schema
    for key, row in non_default.items():
        assert row["value"] == schema.lookup(key).default, key


def test_apply_validates_shows_the_diff_then_replaces(cfg, pdir, tmp_path):
    new = tmp_path / "new-dev.toml"
    new.write_text('extends = "base"\nenvironment = "dev"\n\n[workers]\nmax_workers = 3\n')
    dry = cfg("apply", str(new), "--dry-run")
    assert dry.returncode == 0 and "workers.max_workers: 4 → 3" in dry.stdout
    assert "max_workers = 4" in (pdir / "dev.toml").read_text()
    assert cfg("apply", str(new)).returncode == 0
    assert (pdir / "dev.toml").read_bytes() == new.read_bytes()
    bad = tmp_path / "bad.toml"
    bad.write_text(BROKEN)
    before = (pdir / "dev.toml").read_bytes()
    r = cfg("apply", str(bad))
    assert r.returncode == 1 and "$.cache.policy" in r.stderr
    assert (pdir / "dev.toml").read_bytes() == before


# -- push ------------------------------------------------------------------------------------------
def test_push_retunes_a_live_cache_and_prints_what_changed(cfg, pdir, start_target):
    t = start_target("interval=0.2")
    assert t.send('cache users {"max_entries": 5000}') == "ok users"
    assert t.send("fill users 3000") == "ok 3000"
    # dev.toml says [caches.users] max_entries = 2000; preview first
    dry = cfg("push", str(t.pid), "--env", "dev", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "users max_entries → 2000" in dry.stdout and "dry run, nothing applied" in dry.stdout
    assert t.send("len users") == "ok 3000"
    r = cfg("push", str(t.pid), "--env", "dev", "--set", "caches.users.max_entries=1500")
    assert r.returncode == 0, r.stderr
    assert "users max_entries → 1500" in r.stdout
    assert "agent interval: 0.2 → 0.5" in r.stdout  # dev samples every 500ms
    assert t.send("len users") == "ok 1500"
    again = cfg("push", str(t.pid), "--env", "dev", "--set", "caches.users.max_entries=1500",
                "--json")
    assert json.loads(again.stdout)["changed"] == {}


def test_push_refuses_an_invalid_profile_and_a_missing_agent(cfg, pdir, start_target):
    t = start_target("interval=0.2")
    assert t.send('cache users {"max_entries": 50}') == "ok users"
    (pdir / "dev.toml").write_text(BROKEN)
    r = cfg("push", str(t.pid))
    assert r.returncode == 1 and r.stderr.startswith("Not pushed: dev is invalid.")
    assert t.send("len users") == "ok 0"  # untouched (and alive)
    gone = cfg("push", "999999999", "--env", "prod")
    assert gone.returncode == 2 and len(gone.stderr.strip().splitlines()) == 1


# -- review fixes ----------------------------------------------------------------------------------
def test_push_defaults_to_the_agents_env_and_refuses_another_without_force(cfg, start_target):
    t = start_target("interval=0.2", "env=prod")
    assert t.send('cache users {"max_entries": 5000}') == "ok users"
    # $MEMTUI_ENV says dev, but the agent runs prod: prod is what gets pushed
    r = cfg("push", str(t.pid), env={"MEMTUI_ENV": "dev"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Pushing prod (")
    assert "users max_entries → 500000" in r.stdout
    doc = json.loads(cfg("push", str(t.pid), "--dry-run", "--json").stdout)
    assert doc["pushed_env"] == doc["agent_env"] == "prod"
    # an explicit other environment would retune a prod service as dev: refused, exit 2
    other = cfg("push", str(t.pid), "--env", "dev")
    assert other.returncode == 2 and other.stdout == ""
    assert len(other.stderr.strip().splitlines()) == 1
    assert "runs 'prod', not 'dev'" in other.stderr and "--force" in other.stderr
    forced = cfg("push", str(t.pid), "--env", "dev", "--force", "--dry-run")
    assert forced.returncode == 0, forced.stderr
    assert "Pushing dev (" in forced.stdout and "users max_entries → 2000" in forced.stdout


def test_push_lists_keys_the_profile_leaves_as_they_are(cfg, pdir, start_target):
    t = start_target("interval=0.2", "env=dev", "profiles=" + str(pdir))
    assert t.send('cache users {"max_entries": 5000}') == "ok users"
    assert t.send("len users") == "ok 0"
    assert cfg("unset", "caches.users", "pools.db").returncode == 0
    r = cfg("push", str(t.pid))
    assert r.returncode == 0, r.stderr
    left = [line for line in r.stdout.splitlines() if line.startswith("Left as they are")]
    assert left == ["Left as they are (the profile does not set them): "
                    "caches.users.max_entries, pools.db.max_size."], r.stdout
    doc = json.loads(cfg("push", str(t.pid), "--dry-run", "--json").stdout)
    assert doc["not_set"] == []  # the agent now holds what was pushed


def test_push_reports_restart_only_options_without_failing(cfg, pdir, start_target):
    t = start_target("interval=0.2", "env=prod")
    assert cfg("set", "profiler.trace=true", "profiler.enabled=false",
               "--env", "prod").returncode == 0
    r = cfg("push", str(t.pid))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "agent history: needs a restart: the agent runs with 600, asked for 720" in r.stdout
    assert "agent trace: needs a restart" in r.stdout
    assert "refused" not in r.stdout
    assert "profiler.enabled = false: applies at the next start" in r.stdout
    doc = json.loads(cfg("push", str(t.pid), "--json").stdout)
    assert doc["errors"] == {}
    assert set(doc["needs_restart"]) == {"option history", "option trace"}
    assert doc["next_start"] == {"profiler.enabled": False}


def test_secrets_are_masked_inside_tables_and_in_file_diffs(cfg, pdir, tmp_path):
    assert cfg("set", 'custom.db={password = "pw1-secret", host = "dbhost"}',
               "custom.tokens.main=tok-secret").returncode == 0
    for args in (("get", "custom"), ("get", "custom.db"), ("get", "custom.tokens"),
                 ("show", "--json"), ("show",), ("export",), ("explain", "custom.db")):
        r = cfg(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert "pw1-secret" not in r.stdout and "tok-secret" not in r.stdout, args
    assert json.loads(cfg("get", "custom.db").stdout) == {"password": "********",
                                                          "host": "dbhost"}
    assert "pw1-secret" in cfg("get", "custom.db", "--show-secrets").stdout
    # a table value from an env var
    env = {"MEMTUI__CUSTOM__DB": '{password="pw2-secret"}'}
    doc = json.loads(cfg("show", "--json", env=env).stdout)
    assert doc["keys"]["custom.db"]["value"] == {"password": "********"}
    # the dry-run file diff shows the lines that change, not the values
    for args in (("set", "custom.db_password=hunter2-secret", "--dry-run"),
                 ("set", "custom.db.password=pw3-secret", "--dry-run"),
                 ("unset", "custom.db", "--dry-run")):
        r = cfg(*args)
        assert r.returncode == 0, (args, r.stderr)
        assert "-secret" not in r.stdout, (args, r.stdout)
        assert "+++ " in r.stdout or "--- " in r.stdout
    new = tmp_path / "dev.toml"
    new.write_text('extends = "base"\nenvironment = "dev"\n[custom]\napi_key = "key-secret"\n'
                   'db = {password = "pw4-secret"}\n')
    r = cfg("apply", str(new), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "-secret" not in r.stdout and 'api_key = "********"' in r.stdout
    # a change that would print ******** → ******** says what it is
    r = cfg("set", "custom.db.password=pw5-secret")
    assert r.returncode == 0, r.stderr
    assert "custom.db.password: (secret changed)" in r.stdout and "-secret" not in r.stdout


def test_export_of_masked_secrets_warns(cfg, pdir, tmp_path):
    out = tmp_path / "dev-export.toml"
    plain = cfg("export", "-o", str(out))
    assert plain.returncode == 0 and plain.stderr == ""  # nothing secret: nothing to say
    assert cfg("set", "custom.db_password=hunter2").returncode == 0
    r = cfg("export", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "hunter2" not in out.read_text()
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Secrets are masked" in r.stderr and str(out) in r.stderr
    assert "custom.db_password" in r.stderr and "--show-secrets" in r.stderr
    shown = cfg("export", "-o", str(out), "--show-secrets")
    assert shown.stderr == "" and "hunter2" in out.read_text()


def test_toml_datetimes_print_as_json(cfg):
    assert cfg("set", "custom.when=1979-05-27T07:32:00Z").returncode == 0
    iso = "1979-05-27T07:32:00+00:00"
    for args, code in ((("show", "--json"), 0), (("export", "-f", "json"), 0),
                       (("diff", "-f", "json"), 1), (("get", "custom"), 0)):
        r = cfg(*args)
        assert r.returncode == code and "Traceback" not in r.stderr, (args, r.stderr)
        assert iso in r.stdout, args
    assert json.loads(cfg("get", "custom").stdout)["when"] == iso


@pytest.mark.parametrize("args", [("diff", "dev", "prodd"), ("get", "cache.ttl", "-e", "prodd"),
                                  ("show", "-e", "prodd"), ("explain", "cache.ttl", "-e", "prodd"),
                                  ("export", "-e", "prodd"), ("validate", "-e", "prodd")])
def test_an_unknown_environment_is_a_usage_error(cfg, pdir, args):
    r = cfg(*args)
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    assert r.stderr.startswith("No profile 'prodd' in ")
    assert r.stderr.strip().endswith("(profiles here: base, dev, prod, test).")
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_env_names_and_unreadable_profiles_exit_2_missing_keys_1(cfg, pdir):
    for args in (("show", "-e", "a b"), ("get", "cache.ttl", "-e", "a b"),
                 ("set", "pool.max_size=3", "-e", "a b"), ("diff", "dev", "a b")):
        r = cfg(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr == "'a b' is not an environment name (letters, digits, _ and - only).\n"
    assert cfg("get", "custom.nothing_here").returncode == 1
    (pdir / "test.toml").write_text('environment = "test"\n[cache]\nmax_entries = = 3\n')
    r = cfg("diff", "dev", "test")  # exit 1 would mean "they differ"
    assert r.returncode == 2 and "test.toml::$: not valid TOML" in r.stderr


def test_write_names_the_backup_it_left_and_refusals_say_nothing_was_written(cfg, pdir,
                                                                             tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    (pdir / "dev.toml").rename(real / "dev.toml")
    (pdir / "dev.toml").symlink_to(real / "dev.toml")
    r = cfg("set", "pool.max_size=7")
    assert r.returncode == 0, r.stderr
    assert "(previous version in %s)." % (real / "dev.toml.bak") in r.stdout
    assert (real / "dev.toml.bak").exists() and not (pdir / "dev.toml.bak").exists()
    # a new file has no previous version, whatever an old .bak next to it holds
    (pdir / "qa.toml.bak").write_text("# stale\n")
    new = tmp_path / "qa.toml"
    new.write_text('extends = "base"\nenvironment = "qa"\n')
    r = cfg("apply", str(new), "--env", "qa")
    assert r.returncode == 0, r.stderr
    assert "Wrote %s." % (pdir / "qa.toml") in r.stdout and "previous version" not in r.stdout
    # a refused edit: its problems, then one summary line
    before = (real / "dev.toml").read_bytes()
    bad = cfg("set", "pool.max_size=-1")
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert any("$.pool.max_size:" in line for line in lines[:-1])
    assert lines[-1] == "Nothing written to %s." % (pdir / "dev.toml")
    assert (real / "dev.toml").read_bytes() == before


def test_get_and_explain_print_tables_with_what_they_inherit(cfg, pdir):
    users = json.loads(cfg("get", "caches.users", "-e", "prod").stdout)
    assert users["max_entries"] == 500000  # prod.toml's [caches.users]
    assert users["max_bytes"] == "1GiB"  # inherited from prod.toml's [cache]
    assert users["tiers"] == {"warm": {"max_bytes": "512MiB", "compression": 6}}
    tiers = cfg("get", "caches.users.tiers", "-e", "prod")
    assert tiers.returncode == 0, tiers.stderr
    assert json.loads(tiers.stdout) == {"warm": {"max_bytes": "512MiB", "compression": 6}}
    sessions = json.loads(cfg("get", "caches.sessions", "-e", "prod").stdout)
    assert sessions["ttl"] == "20s" and sessions["max_bytes"] == "1GiB"  # base.toml, prod.toml
    assert json.loads(cfg("get", "cache.tiers").stdout) == {}  # dev: the schema default
    # explain of a per-name table set only in the extended file
    r = cfg("explain", "caches.sessions", "-e", "prod")
    assert r.returncode == 0, r.stderr
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if "│" in line}
    assert rows["profiles/base.toml" if "profiles/base.toml" in rows
                else str(pdir / "base.toml")].startswith("▶")
    assert 'policy = "ttl"' in r.stdout and "not set" in rows[str(pdir / "prod.toml")]
    assert rows["inherits cache"].startswith("▶") and "effective" in rows


def test_a_bad_component_name_is_not_suggested_as_itself(cfg):
    r = cfg("set", "caches.bad name.ttl=1")
    assert r.returncode == 1
    assert "did you mean caches.bad name.ttl" not in r.stderr
    assert "'bad name' is not a valid name in caches" in r.stderr
    r = cfg("get", "caches.users.max_entires")
    assert r.returncode == 1 and "did you mean caches.users.max_entries?" in r.stderr

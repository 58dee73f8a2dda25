"""Profile validation: every problem at once, each as SOURCE::$.path: message, with real files."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memtui.config import schema
from memtui.config.errors import Problem
from memtui.config.profiles import ProfileStore, nest
from memtui.config.validate import (check_all, check_data, check_env, check_file, human_bytes,
                                    human_seconds, problems_json)

ROOT = Path(__file__).resolve().parents[2]


def write(directory: Path, name: str, text: str) -> str:
    path = directory / (name + ".toml")
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return str(path)


def lines(problems):
    return [str(p) for p in problems]


def store(tmp_path: Path) -> ProfileStore:
    return ProfileStore(str(tmp_path), {})


def one(data: dict) -> list:
    """Messages of check_data as ``$.path: message`` (source left out)."""
    return [s.split("::", 1)[1] for s in lines(check_data(data, "f.toml"))]


# -- a valid profile ------------------------------------------------------------------------------
VALID = """
    environment = "dev"

    [profiler]
    interval = "250ms"
    history = 1200
    trace = true

    [cache]
    policy = "ttl"
    ttl = "5m"
    max_bytes = "256MiB"
    max_entries = 10000
    tiers = { warm = { max_bytes = "64MiB" }, cold = { path = "/var/cache", max_bytes = "1GiB" } }

    [caches.users]
    max_entries = 500
    ttl = 90

    [pool]
    min_size = 2
    max_size = 20

    [pools.db_primary]
    max_size = 40

    [tuner]
    gc_thresholds = [5000, 20, 20]

    [alerts]
    memory_limit = "2GB"
    warning_pct = 75.5

    [custom]
    db_password = "hunter2"
    anything = { goes = [1, "two"] }
"""


def test_a_valid_profile_has_no_problems(tmp_path):
    path = write(tmp_path, "dev", VALID)
    assert check_file(path) == []
    assert check_env(store(tmp_path), "dev") == []
    assert check_all(store(tmp_path)) == []


def test_the_schema_defaults_pass_their_own_schema():
    assert check_data(nest(schema.defaults()), "defaults") == []
    assert check_data({}, "empty") == []


def test_the_schema_is_a_valid_2020_12_schema():
    from jsonschema import Draft202012Validator
    Draft202012Validator.check_schema(schema.load_schema())


# -- the schema keeps its own conventions ------------------------------------------------------
def _schema_leaves(node, path, in_defs):
    """Every leaf node of the schema, $defs included: (dotted path, node, inside $defs)."""
    if node.get("type") == "object" and ("properties" in node or "additionalProperties" in node):
        for name, sub in node.get("properties", {}).items():
            yield from _schema_leaves(sub, path + (name,), in_defs)
        return
    if "$ref" in node:
        return
    yield ".".join(path), node, in_defs


def _all_leaves():
    root = schema.load_schema()
    out = list(_schema_leaves(root, (), False))
    for name, node in root["$defs"].items():
        out += list(_schema_leaves(node, ("$defs", name), True))
    return out


def test_every_fixed_leaf_has_description_type_and_default():
    missing = []
    for field in schema.leaves():
        for attr in ("description", "type", "default"):
            if attr not in field.spec and not (attr == "default"
                                               and field.key in ("extends", "environment")):
                missing.append("%s: no %s" % (field.key, attr))
    assert missing == []


def test_every_leaf_incl_named_section_copies_has_description_type_and_applies():
    applies = {"agent", "components", "app"}
    bad = []
    for key, node, _in_defs in _all_leaves():
        if key == "custom":
            continue
        for attr in ("description", "type", "x-applies"):
            if attr not in node:
                bad.append("%s: no %s" % (key, attr))
        if node.get("x-applies", "app") not in applies:
            bad.append("%s: x-applies %r" % (key, node["x-applies"]))
    assert bad == []


def test_unit_leaves_take_a_number_or_a_string_with_a_pattern():
    bad = []
    for key, node, _in_defs in _all_leaves():
        if node.get("x-unit") in ("bytes", "seconds"):
            types = node["type"] if isinstance(node["type"], list) else [node["type"]]
            if "string" not in types or "pattern" not in node or not (
                    "minimum" in node or "exclusiveMinimum" in node):
                bad.append(key)
            want = "integer" if node["x-unit"] == "bytes" else "number"
            if want not in types:
                bad.append(key + " (%s)" % want)
    assert bad == []


@pytest.mark.parametrize("section,named", [("pool", "pool"), ("cache", "cache"),
                                           ("workers", "workers")])
def test_named_section_copies_match_their_section_but_for_defaults(section, named):
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "default"}
        return node
    root = schema.load_schema()
    fixed = strip(root["properties"][section])
    copy = strip(root["$defs"][named])
    fixed.pop("description"), copy.pop("description")
    assert copy == fixed


def test_every_string_default_of_a_unit_key_parses_within_range():
    for field in schema.leaves():
        if field.unit in ("bytes", "seconds") and field.has_default:
            value = schema.magnitude(field, field.default)
            spec = field.spec
            assert spec.get("minimum", value) <= value <= spec.get("maximum", value), field.key
            assert spec.get("exclusiveMinimum", value - 1) < value, field.key
            assert value < spec.get("exclusiveMaximum", value + 1), field.key


# -- every error at once --------------------------------------------------------------------------
def test_five_different_errors_in_one_file_are_all_reported(tmp_path):
    path = write(tmp_path, "dev", """
        colour = "blue"

        [cache]
        max_entries = "abc"
        policy = "mru"

        [caches.users]
        max_entires = 3

        [profiler]
        history = 5
    """)
    assert lines(check_file(path)) == [
        path + "::$.cache.max_entries: expected an integer, got 'abc'",
        path + "::$.cache.policy: expected one of lru, lfu, ttl, got 'mru'",
        path + "::$.caches.users.max_entires: unknown key 'max_entires' (did you mean "
               "max_entries?)",
        path + "::$.colour: unknown key 'colour'; keys of your own go under [custom]",
        path + "::$.profiler.history: 5 is below the minimum of 10",
    ]


def test_problems_are_sorted_by_path_and_carry_their_parts():
    problems = check_data({"tuner": {"gc_thresholds": [1, "x", -1]}, "alerts": {"warning_pct": 101},
                           "cache": {"ttl": "soon"}}, "f.toml")
    assert [p.path for p in problems] == [("alerts", "warning_pct"), ("cache", "ttl"),
                                          ("tuner", "gc_thresholds", 1),
                                          ("tuner", "gc_thresholds", 2)]
    assert all(p.source == "f.toml" for p in problems)


def test_every_unknown_key_has_its_own_path_and_a_suggestion():
    assert one({"chache": {}, "cache": {"max_entires": 3, "ttl": 5, "polcy": "lru"},
                "tuner": {"gc_treshold": [1, 2, 3]}}) == [
        "$.cache.max_entires: unknown key 'max_entires' (did you mean max_entries?)",
        "$.cache.polcy: unknown key 'polcy' (did you mean policy?)",
        "$.chache: unknown key 'chache' (did you mean cache?)",
        "$.tuner.gc_treshold: unknown key 'gc_treshold' (did you mean gc_thresholds?)",
    ]


def test_an_unknown_key_in_the_wrong_section_is_pointed_to_the_right_one():
    assert one({"max_entries": 3}) == [
        "$.max_entries: unknown key 'max_entries' (did you mean cache.max_entries?)"]


def test_an_unknown_key_with_no_close_match_lists_the_section_keys():
    assert one({"alerts": {"zzz": 1}}) == [
        "$.alerts.zzz: unknown key 'zzz' (keys here: memory_limit, warning_pct, critical_pct, "
        "hysteresis_pct, cache_hit_rate_warning, pool_saturation, queue_backlog, "
        "pressure_actions)"]


def test_unknown_keys_in_named_sections_and_deep_tables():
    assert one({"caches": {"users": {"max_entires": 3}},
                "worker_pools": {"io": {"max_worker": 3}},
                "cache": {"tiers": {"warm": {"compresion": 3}, "hot": {}}}}) == [
        "$.cache.tiers.hot: unknown key 'hot' (keys here: warm, cold)",
        "$.cache.tiers.warm.compresion: unknown key 'compresion' (did you mean compression?)",
        "$.cache.tiers.warm.max_bytes: required key missing",
        "$.caches.users.max_entires: unknown key 'max_entires' (did you mean max_entries?)",
        "$.worker_pools.io.max_worker: unknown key 'max_worker' (did you mean max_workers?)",
    ]


def test_a_tier_needs_a_budget_reported_at_the_missing_key(tmp_path):
    path = write(tmp_path, "dev", """
        [cache.tiers.warm]
        compression = 6
        [caches.users.tiers.cold]
        path = "/var/cache"
    """)
    assert lines(check_file(path)) == [
        path + "::$.cache.tiers.warm.max_bytes: required key missing",
        path + "::$.caches.users.tiers.cold.max_bytes: required key missing",
    ]
    assert one({"cache": {"tiers": {"warm": {"max_bytes": "64MiB"}}}}) == []
    # a tier exists only when configured: no per-key defaults inside it
    for tier in ("warm", "cold"):
        for key in schema.load_schema()["properties"]["cache"]["properties"]["tiers"][
                "properties"][tier]["properties"]:
            assert not schema.lookup("cache.tiers.%s.%s" % (tier, key)).has_default, key


def test_custom_takes_any_key_and_value():
    assert one({"custom": {"x": 1, "nested": {"deep": [1, {"a": None is None}]}}}) == []


def test_a_bad_section_name_is_reported_at_the_name():
    assert one({"caches": {"bad name": {"ttl": 1}, "ok_name-1": {}}}) == [
        "$.caches['bad name']: 'bad name' is not a valid name (letters, digits, _ and - only)"]


# -- types, enums, ranges -------------------------------------------------------------------------
@pytest.mark.parametrize("data,expected", [
    ({"cache": {"max_entries": "abc"}}, "$.cache.max_entries: expected an integer, got 'abc'"),
    ({"cache": {"max_entries": 3.0}}, "$.cache.max_entries: expected an integer, got 3.0"),
    ({"cache": {"max_entries": True}}, "$.cache.max_entries: expected an integer, got true"),
    ({"cache": {"max_bytes": True}},
     "$.cache.max_bytes: expected a size (512MiB, 2GB or a number of bytes), got true"),
    ({"cache": {"max_bytes": 1.5}},
     "$.cache.max_bytes: expected a size (512MiB, 2GB or a number of bytes), got 1.5"),
    ({"cache": {"ttl": False}},
     "$.cache.ttl: expected a duration (250ms, 90s or 5m), got false"),
    ({"cache": {"enabled": "yes"}}, "$.cache.enabled: expected true or false, got 'yes'"),
    ({"cache": 5}, "$.cache: expected a table, got 5"),
    ({"cache": {"max_entries": {"a": 1}}}, "$.cache.max_entries: expected an integer, got a table"),
    ({"tuner": {"gc_thresholds": "700,10,10"}},
     "$.tuner.gc_thresholds: expected a list, got '700,10,10'"),
    ({"alerts": {"warning_pct": "80%"}}, "$.alerts.warning_pct: expected a number, got '80%'"),
    ({"cache": {"policy": "mru"}}, "$.cache.policy: expected one of lru, lfu, ttl, got 'mru'"),
    ({"cache": {"policy": 3}}, "$.cache.policy: expected one of lru, lfu, ttl, got 3"),
    ({"workers": {"when_full": "drop"}},
     "$.workers.when_full: expected one of raise, block, got 'drop'"),
    ({"pool": {"max_size": 5000}}, "$.pool.max_size: 5000 is above the maximum of 1024"),
    ({"pool": {"max_size": 0}}, "$.pool.max_size: 0 is below the minimum of 1"),
    ({"alerts": {"warning_pct": 100.5}},
     "$.alerts.warning_pct: 100.5 must be below 100"),
    ({"profiler": {"history": 3.0}}, "$.profiler.history: expected an integer, got 3.0"),
    ({"environment": "my env"},
     "$.environment: 'my env' is not an environment name (letters, digits, _ and - only)"),
    ({"extends": "../base"},
     "$.extends: '../base' is not a profile name (letters, digits, _ and - only)"),
    ({"extends": 5}, "$.extends: expected a string, got 5"),
])
def test_type_enum_and_range_messages(data, expected):
    assert one(data) == [expected]


def test_list_items_and_length():
    assert one({"tuner": {"gc_thresholds": [700, "a"]}}) == [
        "$.tuner.gc_thresholds: expected exactly 3 items, got 2",
        "$.tuner.gc_thresholds[1]: expected an integer, got 'a'",
    ]
    assert one({"tuner": {"gc_thresholds": [700, 10, 200000]}}) == [
        "$.tuner.gc_thresholds[2]: 200000 is above the maximum of 100000"]


def test_a_date_is_named_as_such():
    import datetime
    assert one({"cache": {"ttl": datetime.date(2024, 1, 2)}}) == [
        "$.cache.ttl: expected a duration (250ms, 90s or 5m), got a date/time (2024-01-02)"]


# -- units ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("data,expected", [
    ({"cache": {"max_bytes": "2048TiB"}},
     "$.cache.max_bytes: 2048TiB is above the maximum of 64TiB"),
    ({"cache": {"max_bytes": "3000TB"}},
     "$.cache.max_bytes: 3000TB (2728.48TiB) is above the maximum of 64TiB"),
    ({"cache": {"max_bytes": 2 ** 51}},
     "$.cache.max_bytes: 2251799813685248 bytes (2048TiB) is above the maximum of 64TiB"),
    ({"cache": {"max_bytes": -1}}, "$.cache.max_bytes: -1 bytes is below the minimum of 0 bytes"),
    ({"cache": {"max_bytes": "lots"}},
     "$.cache.max_bytes: 'lots' is not a size (try 512MiB, 2GB or a number of bytes)"),
    ({"cache": {"max_bytes": "2PiB"}},  # no P unit: a size that big is written 2048TiB
     "$.cache.max_bytes: '2PiB' is not a size (try 512MiB, 2GB or a number of bytes)"),
    ({"cache": {"ttl": "-5s"}}, "$.cache.ttl: -5s is below the minimum of 0s"),
    ({"cache": {"ttl": "lots"}},
     "$.cache.ttl: 'lots' is not a duration (try 250ms, 90s or 5m)"),
    ({"cache": {"ttl": "90d"}},  # no day unit
     "$.cache.ttl: '90d' is not a duration (try 250ms, 90s or 5m)"),
    ({"cache": {"ttl": "721h"}}, "$.cache.ttl: 721h is above the maximum of 720h (30 days)"),
    ({"cache": {"ttl": 3000000}},
     "$.cache.ttl: 3000000s (833.33h) is above the maximum of 720h (30 days)"),
    ({"cache": {"ttl": -1}}, "$.cache.ttl: -1s is below the minimum of 0s"),
    ({"profiler": {"interval": "5ms"}},
     "$.profiler.interval: 5ms is below the minimum of 10ms"),
    ({"profiler": {"interval": 0.001}},
     "$.profiler.interval: 0.001s (1ms) is below the minimum of 10ms"),
    ({"profiler": {"interval": "2h"}}, "$.profiler.interval: 2h is above the maximum of 1h"),
    ({"workers": {"block_timeout": "61m"}},
     "$.workers.block_timeout: 61m (1.02h) is above the maximum of 1h"),
])
def test_unit_values_are_range_checked_with_readable_numbers(data, expected):
    assert one(data) == [expected]


@pytest.mark.parametrize("data,expected", [
    ({"pool": {"scale_down_after": 0}}, "$.pool.scale_down_after: 0s must be above 0s"),
    ({"pool": {"scale_down_after": "0ms"}}, "$.pool.scale_down_after: 0ms (0s) must be above 0s"),
    ({"pool": {"scale_down_after": "-1s"}}, "$.pool.scale_down_after: -1s must be above 0s"),
    ({"workers": {"idle_timeout": "0s"}}, "$.workers.idle_timeout: 0s must be above 0s"),
    ({"alerts": {"warning_pct": 0}}, "$.alerts.warning_pct: 0 must be above 0"),
    ({"alerts": {"warning_pct": 100, "critical_pct": 100}},
     "$.alerts.warning_pct: 100 must be below 100"),
    ({"pool": {"scale_up_threshold": 0}}, "$.pool.scale_up_threshold: 0 must be above 0"),
    ({"pool": {"scale_down_threshold": 1.0}}, "$.pool.scale_down_threshold: 1 must be below 1"),
])
def test_exclusive_bounds_for_numbers_and_unit_strings(data, expected):
    """Components refuse these (a duration must be > 0, 0 < warning_pct < critical_pct): the
    schema says so with exclusiveMinimum/exclusiveMaximum, for unit strings too."""
    assert one(data)[:1] == [expected]


@pytest.mark.parametrize("value", ["512MiB", "2GB", "1.5KiB", " 64 mib ", 0, "0", "64TiB",
                                   70368744177664])
def test_sizes_in_range_pass(value):
    assert one({"cache": {"max_bytes": value}}) == []


@pytest.mark.parametrize("value", ["250ms", "90s", "5m", "2min", "1h", "720h", 0, 1.5, ".5s"])
def test_durations_in_range_pass(value):
    assert one({"cache": {"ttl": value}}) == []


def test_human_numbers():
    assert human_bytes(1125899906842624) == "1024TiB"
    assert human_bytes(1536) == "1.5KiB"
    assert human_bytes(100) == "100 bytes"
    assert human_seconds(2592000) == "720h (30 days)"
    assert human_seconds(86400) == "24h"
    assert human_seconds(300) == "5m"
    assert human_seconds(90) == "90s"
    assert human_seconds(0.01) == "10ms"
    assert human_seconds(0) == "0s"


# -- cross-field rules ----------------------------------------------------------------------------
def test_cross_field_rules_in_one_file(tmp_path):
    path = write(tmp_path, "dev", """
        [pool]
        min_size = 5
        max_size = 3
        [alerts]
        warning_pct = 90
        critical_pct = 85
        [caches.users]
        policy = "ttl"
    """)
    assert lines(check_file(path)) == [
        path + "::$.alerts.warning_pct: warning_pct 90 must be below critical_pct 85",
        path + "::$.caches.users.policy: policy 'ttl' needs a ttl above 0",
        path + "::$.pool.min_size: min_size 5 is above max_size 3",
    ]


def test_cross_field_across_an_extends_chain_names_the_file_of_the_reported_value(tmp_path):
    base = write(tmp_path, "base", """
        [alerts]
        warning_pct = 90
        [pool]
        max_size = 3
    """)
    dev = write(tmp_path, "dev", """
        extends = "base"
        environment = "dev"
        [alerts]
        critical_pct = 85
        [pool]
        min_size = 5
    """)
    assert check_file(base) == [] and check_file(dev) == []  # each is fine alone
    assert lines(check_env(store(tmp_path), "dev")) == [
        dev + "::$.pool.min_size: min_size 5 is above max_size 3",
        base + "::$.alerts.warning_pct: warning_pct 90 must be below critical_pct 85 (in dev)",
    ]
    assert check_env(store(tmp_path), "base") == []


def test_a_cross_field_problem_in_a_named_section_inherits_its_source(tmp_path):
    base = write(tmp_path, "base", """
        [cache]
        policy = "ttl"
        ttl = "5m"
    """)
    dev = write(tmp_path, "dev", """
        extends = "base"
        [caches.users]
        ttl = 0
    """)
    assert lines(check_env(store(tmp_path), "dev")) == [
        base + "::$.caches.users.policy: policy 'ttl' needs a ttl above 0 (in dev)"]
    assert check_file(dev) == []


def test_a_base_value_that_breaks_two_envs_is_reported_for_each(tmp_path):
    base = write(tmp_path, "base", "[pool]\nmin_size = 6\n")
    write(tmp_path, "dev", 'extends = "base"\n[pool]\nmax_size = 4\n')
    write(tmp_path, "prod", 'extends = "base"\n[pool]\nmax_size = 5\n')
    write(tmp_path, "test", 'extends = "base"\n')
    assert lines(check_all(store(tmp_path))) == [
        base + "::$.pool.min_size: min_size 6 is above max_size 4 (in dev)",
        base + "::$.pool.min_size: min_size 6 is above max_size 5 (in prod)",
    ]


def test_a_problem_only_in_one_file_is_reported_once_for_it(tmp_path):
    base = write(tmp_path, "base", """
        [cache]
        max_entries = -1
    """)
    write(tmp_path, "dev", 'extends = "base"\n')
    expected = [base + "::$.cache.max_entries: -1 is below the minimum of 0"]
    assert lines(check_env(store(tmp_path), "dev")) == expected
    assert lines(check_all(store(tmp_path))) == expected


# -- overrides ------------------------------------------------------------------------------------
def test_env_var_that_does_not_coerce(tmp_path):
    write(tmp_path, "dev", VALID)
    got = check_env(store(tmp_path), "dev", environ={"MEMTUI__CACHE__MAX_ENTRIES": "lots"})
    assert lines(got) == [
        "env:MEMTUI__CACHE__MAX_ENTRIES::$.cache.max_entries: expected an integer, got 'lots'"]


def test_overrides_out_of_range_or_unknown_are_attributed_to_them(tmp_path):
    write(tmp_path, "dev", VALID)
    got = check_env(store(tmp_path), "dev", overrides=["pool.max_size=5000", "cache.nope=1"],
                    environ={"MEMTUI__CACHE__COMPRESSION": "12",
                             "MEMTUI__PROFILER__INTERVAL": "1ms"})
    assert lines(got) == [
        "env:MEMTUI__CACHE__COMPRESSION::$.cache.compression: 12 is above the maximum of 9",
        "env:MEMTUI__PROFILER__INTERVAL::$.profiler.interval: 1ms is below the minimum of 10ms",
        "--set::$.cache.nope: unknown key 'cache.nope'; keys of your own go under custom.",
        "--set::$.pool.max_size: 5000 is above the maximum of 1024",
    ]


def test_the_rest_is_checked_when_an_override_is_bad(tmp_path):
    dev = write(tmp_path, "dev", """
        [pool]
        min_size = 5
    """)
    got = check_env(store(tmp_path), "dev", overrides=["pool.max_size=3", "cache.ttl=soon"])
    assert lines(got) == [
        dev + "::$.pool.min_size: min_size 5 is above max_size 3",
        "--set::$.cache.ttl: not a duration: 'soon' (try 250ms, 90s or 2m)",
    ]


def test_a_cross_field_problem_from_an_override_names_the_override(tmp_path):
    write(tmp_path, "dev", "[alerts]\ncritical_pct = 85\n")
    got = check_env(store(tmp_path), "dev", environ={"MEMTUI__ALERTS__WARNING_PCT": "90"})
    assert lines(got) == ["env:MEMTUI__ALERTS__WARNING_PCT::$.alerts.warning_pct: "
                          "warning_pct 90 must be below critical_pct 85"]


def test_the_store_environ_is_used_by_default(tmp_path):
    write(tmp_path, "dev", VALID)
    s = ProfileStore(str(tmp_path), {"MEMTUI__POOL__MAX_SIZE": "x"})
    assert lines(check_env(s, "dev")) == [
        "env:MEMTUI__POOL__MAX_SIZE::$.pool.max_size: expected an integer, got 'x'"]
    assert lines(check_env(s, "dev", environ={})) == []


# -- files, chains and names ----------------------------------------------------------------------
def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "dev", """
        [cache]
        ttl = "5m"
        max_entries =
    """)
    expected = [path + "::$: not valid TOML: Invalid value (at line 3, column 14)"]
    assert lines(check_file(path)) == expected
    assert lines(check_env(store(tmp_path), "dev")) == expected


def test_a_missing_or_unreadable_file(tmp_path):
    missing = str(tmp_path / "nope.toml")
    assert lines(check_file(missing)) == [missing + "::$: no such file"]
    (tmp_path / "dir.toml").mkdir()
    assert lines(check_file(str(tmp_path / "dir.toml"))) == [
        str(tmp_path / "dir.toml") + "::$: is a directory, not a profile file"]
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"a = '\xff'\n")
    assert check_file(str(binary))[0].message.startswith("not valid TOML")


def test_an_extends_loop(tmp_path):
    a = write(tmp_path, "a", 'extends = "b"\n[cache]\nttl = "x"\n')
    b = write(tmp_path, "b", 'extends = "a"\n')
    assert lines(check_env(store(tmp_path), "a")) == [
        a + "::$.cache.ttl: 'x' is not a duration (try 250ms, 90s or 5m)",
        b + "::$.extends: extends loops: a -> b -> a",
    ]
    assert lines(check_all(store(tmp_path))) == [
        a + "::$.cache.ttl: 'x' is not a duration (try 250ms, 90s or 5m)",
        b + "::$.extends: extends loops: a -> b -> a",
        a + "::$.extends: extends loops: b -> a -> b",
    ]


def test_extends_a_missing_profile_is_reported_against_the_referring_file(tmp_path):
    dev = write(tmp_path, "dev", 'extends = "bse"\n')
    assert lines(check_env(store(tmp_path), "dev")) == [
        dev + "::$.extends: extends 'bse' but bse.toml does not exist (profiles here: dev)"]
    write(tmp_path, "prod", 'extends = "mid"\n')
    mid = write(tmp_path, "mid", 'extends = "nope"\n')
    expected = mid + "::$.extends: extends 'nope' but nope.toml does not exist (profiles here: " \
                     "dev, mid, prod)"
    assert lines(check_env(store(tmp_path), "prod")) == [expected]
    assert lines(check_all(store(tmp_path))) == [
        dev + "::$.extends: extends 'bse' but bse.toml does not exist (profiles here: dev, mid, "
              "prod)", expected]


def test_a_byte_order_mark_is_named(tmp_path):
    path = tmp_path / "dev.toml"
    path.write_bytes(b"\xef\xbb\xbf[cache]\nttl = 1\n")
    expected = [str(path) + "::$: starts with a byte-order mark; save it as UTF-8 without BOM"]
    assert lines(check_file(str(path))) == expected
    assert lines(check_env(store(tmp_path), "dev")) == expected


def test_a_bad_extends_is_reported_once(tmp_path):
    dev = write(tmp_path, "dev", "extends = 5\n")
    assert lines(check_env(store(tmp_path), "dev")) == [
        dev + "::$.extends: expected a string, got 5"]


def test_environment_must_match_the_file_name(tmp_path):
    dev = write(tmp_path, "dev", 'environment = "prod"\n')
    expected = [dev + "::$.environment: environment 'prod' does not match the file name dev.toml"]
    assert lines(check_file(dev)) == expected
    assert lines(check_env(store(tmp_path), "dev")) == expected
    assert check_data({"environment": "prod"}, dev) == []  # no file name to compare with


def test_an_environment_inherited_from_another_file_is_a_problem_of_the_env(tmp_path):
    write(tmp_path, "prod", 'environment = "prod"\n')
    staging = write(tmp_path, "staging", 'extends = "prod"\n')
    assert lines(check_env(store(tmp_path), "staging")) == [
        staging + "::$.environment: environment 'prod' (from prod.toml) does not match the file "
                  "name staging.toml; set environment = 'staging' here"]
    assert check_env(store(tmp_path), "prod") == []


def test_a_bad_environment_name_is_not_also_a_mismatch(tmp_path):
    dev = write(tmp_path, "dev", 'environment = "a b"\n')
    assert lines(check_file(dev)) == [
        dev + "::$.environment: 'a b' is not an environment name (letters, digits, _ and - only)"]


def test_check_env_checks_content_not_yet_written(tmp_path):
    write(tmp_path, "dev", VALID)
    edited = store(tmp_path).with_content("dev", {"cache": {"max_entries": -3}})
    assert lines(check_env(edited, "dev")) == [
        str(tmp_path / "dev.toml") + "::$.cache.max_entries: -3 is below the minimum of 0"]


def test_check_all_covers_bases_and_reports_each_problem_once(tmp_path):
    base = write(tmp_path, "base", "[cache]\nmax_bytes = \"lots\"\n")
    write(tmp_path, "dev", 'extends = "base"\nenvironment = "dev"\n')
    prod = write(tmp_path, "prod", 'extends = "base"\nenvironment = "prod"\n[pool]\nmax_size = 0\n')
    broken = write(tmp_path, "zz", "[cache\n")
    assert lines(check_all(store(tmp_path))) == [
        base + "::$.cache.max_bytes: 'lots' is not a size (try 512MiB, 2GB or a number of bytes)",
        prod + "::$.pool.max_size: 0 is below the minimum of 1",
        broken + "::$: not valid TOML: Expected ']' at the end of a table declaration "
                 "(at line 1, column 7)",
    ]


def test_a_section_name_with_dots_is_refused_once_with_a_clear_message(tmp_path):
    # dotted keys address names (`caches.NAME.ttl`), so a name cannot hold a dot
    dev = write(tmp_path, "dev", """
        [pools."db.primary"]
        max_size = 40
    """)
    got = lines(check_env(store(tmp_path), "dev"))
    assert (dev + "::$.pools['db.primary']: 'db.primary' is not a valid name "
            "(letters, digits, _ and - only)") in got


def test_check_env_of_a_missing_profile(tmp_path):
    write(tmp_path, "dev", VALID)
    assert lines(check_env(store(tmp_path), "prod")) == [
        str(tmp_path / "prod.toml") + "::$: no such file (profiles here: dev)"]


def test_a_set_without_an_equals_sign(tmp_path):
    write(tmp_path, "dev", "[alerts]\ncritical_pct = 85\n")
    got = check_env(store(tmp_path), "dev", overrides=["garbage", "alerts.warning_pct=90"])
    assert lines(got) == [
        "--set::$: expected KEY=VALUE, got 'garbage'",
        "--set::$.alerts.warning_pct: warning_pct 90 must be below critical_pct 85",
    ]


def test_check_env_with_a_bad_env_name(tmp_path):
    got = check_env(store(tmp_path), "../etc")
    assert len(got) == 1 and "not an environment name" in got[0].message


def test_problems_json():
    problems = [Problem("dev.toml", ("caches", "my cache", "ttl"), "bad"),
                Problem("env:MEMTUI__X", ("tuner", "gc_thresholds", 0), "worse")]
    assert problems_json(problems) == [
        {"source": "dev.toml", "path": "$.caches['my cache'].ttl", "message": "bad"},
        {"source": "env:MEMTUI__X", "path": "$.tuner.gc_thresholds[0]", "message": "worse"},
    ]
    json.dumps(problems_json(check_data({"cache": {"ttl": "x"}}, "f")))


def test_importing_validate_does_not_import_jsonschema_until_used():
    code = ("import sys; import memtui.config.validate as v; a = 'jsonschema' in sys.modules; "
            "v.check_data({}, 'x'); print(a, 'jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(ROOT), check=True).stdout.split()
    assert out == ["False", "True"]

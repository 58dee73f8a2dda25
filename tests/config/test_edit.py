"""memtui.config.edit on real files: layout-preserving edits, validation before writing, and writes
that leave the original byte-identical on every failure (full disk, file size limit, read-only
places, an immutable file, a held lock, a concurrent writer)."""
from __future__ import annotations

import difflib
import fcntl
import glob
import math
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import ROOT, as_nobody, needs_root, run_in_fork
from memtui.agent.options import parse_duration, parse_size
from memtui.config import edit, safe_write, schema
from memtui.config.errors import ConfigError, WriteError
from memtui.config.profiles import ProfileStore
from memtui.config.validate import check_env

BASE = """\
# The base every test profile extends.
[pool]
max_size = 20

[cache]
ttl = "1m"
"""

DEV = """\
# Development profile: this header comment is kept byte for byte.
# A second header line.

extends = "base"
environment = "dev"   # must match the file name
workers.batch = 8     # a dotted key at the top

[profiler]
# sampling
interval = "2s"       # faster than the default
history = 1200

[cache]
max_entries = 100     # small in dev

ttl = "5m"            # after a blank line

[caches.orders]
max_entries = 50      # a named section

[alerts]
memory_limit = "2GiB"
pressure_actions = { enabled = true, shrink_fraction = 0.5 }

[tuner]
gc_thresholds = [700, 10, 10]  # the interpreter's own

[custom]
log_level = "debug"
"""


def make_profiles(directory, dev: str = DEV, base: str = BASE) -> ProfileStore:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "base.toml").write_text(base)
    (directory / "dev.toml").write_text(dev)
    return ProfileStore(str(directory), {})


def leftovers(directory) -> list:
    """Temp files a write left behind (the lock file stays on purpose)."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(str(directory), ".*.tmp")))


def toml_lines(text: str) -> list:
    """Lines as TOML has them: split at \\n only (str.splitlines() also splits at U+0085,
    U+2028... which a TOML string may hold)."""
    return [line for line in re.split(r"(?<=\n)", text) if line]


def changed_lines(before: str, after: str) -> list:
    matcher = difflib.SequenceMatcher(a=toml_lines(before), b=toml_lines(after), autojunk=False)
    return [op for op in matcher.get_opcodes() if op[0] != "equal"]


@pytest.fixture
def store(tmp_path):
    return make_profiles(tmp_path / "profiles")


def dev_path(store: ProfileStore) -> Path:
    return Path(store.path("dev"))


# -- comments and layout -------------------------------------------------------------------------
def test_set_changes_only_the_edited_values_bytes(store):
    result = edit.set_values(store, "dev", ["cache.max_entries=5000", "profiler.interval=250ms",
                                            "workers.batch=16",
                                            "alerts.pressure_actions.shrink_fraction=0.25"])
    assert result.written
    text = dev_path(store).read_text()
    assert text == result.after
    expected = (DEV.replace("max_entries = 100     # small", "max_entries = 5000     # small")
                .replace('interval = "2s"       #', 'interval = "250ms"       #')
                .replace("workers.batch = 8     #", "workers.batch = 16     #")
                .replace("shrink_fraction = 0.5 }", "shrink_fraction = 0.25 }"))
    assert text == expected
    assert ("cache.max_entries", 100, 5000) in result.changes
    assert ("profiler.interval", "2s", "250ms") in result.changes


def test_new_keys_land_in_their_table_and_new_sections_at_the_end(store):
    result = edit.set_values(store, "dev", ["cache.policy=lfu", "caches.users.ttl=5m",
                                            "custom.flag=true", "execution.batch_size=10"])
    after_lines = result.after.splitlines()
    assert result.after.startswith(DEV.split("[cache]")[0])  # header, comments, order untouched
    cache = after_lines.index("[cache]")
    assert after_lines[cache + 1:cache + 5] == ["max_entries = 100     # small in dev", "",
                                                'ttl = "5m"            # after a blank line',
                                                'policy = "lfu"']
    assert result.after.endswith('log_level = "debug"\nflag = true\n\n[caches.users]\nttl = "5m"'
                                 '\n\n[execution]\nbatch_size = 10\n')
    resolved = ProfileStore(store.directory, {}).resolve("dev")
    assert resolved.get("caches.users.ttl") == "5m"
    assert resolved.get("custom.flag") is True
    assert ("caches.users.ttl", "5m", "5m") not in result.changes  # it inherited cache.ttl "5m"


def test_typed_values(store):
    edit.set_values(store, "dev", ["cache.max_entries=5000", "cache.ttl=5m",
                                   "cache.max_bytes=1024",
                                   "tuner.gc_thresholds=900,20,20", "custom.n=42",
                                   "custom.words=hello world", "custom.t={a = 1}"])
    data = tomllib.loads(dev_path(store).read_text())
    assert data["cache"]["max_entries"] == 5000 and data["cache"]["ttl"] == "5m"
    assert data["cache"]["max_bytes"] == 1024
    assert data["tuner"]["gc_thresholds"] == [900, 20, 20]
    assert data["custom"] == {"log_level": "debug", "n": 42, "words": "hello world",
                              "t": {"a": 1}}
    assert "gc_thresholds = [900, 20, 20]  # the interpreter's own" in dev_path(store).read_text()


def test_unset_keeps_comments_and_removes_emptied_tables(store):
    result = edit.unset_values(store, "dev", ["caches.orders.max_entries", "profiler.history",
                                              "workers.batch"])
    expected = (DEV.replace("history = 1200\n", "")
                .replace("[caches.orders]\nmax_entries = 50      # a named section\n\n", "")
                .replace("workers.batch = 8     # a dotted key at the top\n", ""))
    assert result.after == expected == dev_path(store).read_text()
    resolved = ProfileStore(store.directory, {}).resolve("dev")
    assert resolved.get("profiler.history") == 600  # the schema default
    assert resolved.source("caches.orders.max_entries").kind == "inherited"
    # the last table going does not leave a blank line behind
    edit.unset_values(store, "dev", ["custom.log_level"])
    assert dev_path(store).read_text() == expected.replace('\n[custom]\nlog_level = "debug"\n', "")


def test_super_tables_and_out_of_order_tables_are_edited_in_place(tmp_path):
    dev = ('environment = "dev"\n\n[caches.orders]\nttl = "1m"  # orders\n\n'
           "[alerts.pressure_actions]\nenabled = true\n\n[cache]\nttl = 1\n\n"
           '[profiler]\nhistory = 700\n\n[cache.tiers.warm]\nmax_bytes = "1MiB"  # warm\n')
    store = make_profiles(tmp_path, dev=dev)
    result = edit.set_values(store, "dev", ["caches.orders.ttl=2m",
                                            "alerts.pressure_actions.enabled=false",
                                            "cache.tiers.warm.max_bytes=2MiB", "cache.policy=lfu"])
    assert result.after == (dev.replace('"1m"  # orders', '"2m"  # orders')
                            .replace("enabled = true", "enabled = false")
                            .replace("ttl = 1\n", 'ttl = 1\npolicy = "lfu"\n')
                            .replace('"1MiB"  # warm', '"2MiB"  # warm'))
    edit.unset_values(store, "dev", ["caches.orders", "cache.tiers.warm.max_bytes"])
    data = tomllib.loads(dev_path(store).read_text())
    assert "caches" not in data and "tiers" not in data["cache"]
    assert dev_path(store).read_text().endswith("[profiler]\nhistory = 700\n")


def test_crlf_files_keep_crlf(tmp_path):
    crlf = DEV.replace("\n", "\r\n").encode()
    store = make_profiles(tmp_path)
    dev_path(store).write_bytes(crlf)
    edit.set_values(store, "dev", ["cache.policy=lfu", "caches.users.ttl=5m",
                                   "profiler.history=99"])
    raw = dev_path(store).read_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.startswith(crlf.split(b"[cache]")[0].replace(b"1200", b"99"))
    edit.unset_values(store, "dev", ["caches.users.ttl", "cache.policy", "profiler.history"])
    assert dev_path(store).read_bytes() == crlf.replace(b"history = 1200\r\n", b"")


# -- the property: one key set, its value resolved, every other line untouched -------------------
CROSS_FIELD_SAFE = {  # ranges that keep the cross-field rules true against BASE and DEV
    "min_size": (0, 20), "default_size": (0, 20), "scale_up_threshold": (0.31, 1.0),
    "scale_down_threshold": (0.0, 0.79), "warning_pct": (0.5, 94), "critical_pct": (81, 100)}
SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000 ** 2, "MiB": 1024 ** 2,
              "GiB": 1024 ** 3}
DURATION_UNITS = {"": 1, "s": 1, "ms": 0.001, "m": 60, "h": 3600}
BOOLS = [("true", True), ("yes", True), ("on", True), ("1", True), ("false", False),
         ("no", False), ("off", False), ("0", False)]


# the property edits DEV with both tiers configured: a tier needs its max_bytes, so its other
# keys can only be set where it exists
TIERED = DEV + '\n[cache.tiers.warm]\nmax_bytes = "64MiB"  # warm\n\n[cache.tiers.cold]\n' \
               'max_bytes = "1GiB"\n'


def _fixed_keys():
    keys = [f.key for f in schema.leaves() if f.key not in ("environment", "extends")]
    tiers = schema.lookup("cache.tiers").spec["properties"]
    keys += ["cache.tiers.%s.%s" % (tier, k) for tier in ("warm", "cold")
             for k in tiers[tier]["properties"]]
    return keys


def _named_keys():
    defs = schema.load_schema()["$defs"]
    return ["%s.%s.%s" % (named, name, sub) for named, base in sorted(schema.NAMED.items())
            for name in ("orders", "users", "db-2") for sub in defs[base]["properties"]
            if sub != "tiers"]


def _values(key: str):
    """(text to set, the magnitude it must resolve to) for *key*."""
    field = schema.lookup(key)
    spec = field.spec
    step = 0.001 if field.unit == "seconds" or "number" in field.types else 1
    low = spec.get("minimum", spec.get("exclusiveMinimum", -step) + step)
    high = spec.get("maximum", spec.get("exclusiveMaximum", 10 ** 6 + step) - step)
    low, high = CROSS_FIELD_SAFE.get(key.rsplit(".", 1)[-1], (low, high))
    if "enum" in spec:
        return st.sampled_from(spec["enum"]).map(lambda v: (v, v))
    if field.unit == "bytes":
        return st.sampled_from(sorted(SIZE_UNITS)).flatmap(
            lambda u: st.integers(0, int(high // SIZE_UNITS[u])).map(
                lambda n: ("%d%s" % (n, u), n * SIZE_UNITS[u])))
    if field.unit == "seconds":
        return st.sampled_from(sorted(DURATION_UNITS)).flatmap(
            lambda u: st.integers(math.ceil(low / DURATION_UNITS[u]),
                                  int(high / DURATION_UNITS[u])).map(
                lambda n: ("%d%s" % (n, u), n * DURATION_UNITS[u])))
    if field.types == ("boolean",):
        return st.sampled_from(BOOLS)
    if field.types == ("integer",):
        return st.integers(low, high).map(lambda n: (str(n), n))
    if field.types == ("number",):
        return st.floats(low, high, allow_nan=False).map(lambda x: (repr(x), x))
    if field.types == ("array",):
        return st.lists(st.integers(0, 100000), min_size=3, max_size=3).map(
            lambda xs: (",".join(map(str, xs)), xs))
    assert field.types == ("string",), key
    return st.text(st.characters(blacklist_categories=("Cs",)), max_size=20).map(
        lambda s: (s, s))


ASSIGNMENTS = st.sampled_from(_fixed_keys() + _named_keys()).flatmap(
    lambda key: _values(key).map(lambda tv: (key,) + tv))


def _magnitude(field, value):
    if field.unit == "bytes":
        return parse_size(value)
    if field.unit == "seconds":
        return parse_duration(value)
    return value


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ASSIGNMENTS)
@example(("cache.tiers.cold.path", "\x85", "\x85"))  # U+0085 and U+2028 end no TOML line
@example(("profiler.output_dir", "a\u2028b", "a\u2028b"))
@example(("cache.tiers.warm.compression", "9", 9))  # a new key in an out-of-order table
def test_property_set_then_resolve_and_only_one_line_changes(assignment):
    key, text, want = assignment
    field = schema.lookup(key)
    with tempfile.TemporaryDirectory() as tmp:
        store = make_profiles(tmp, dev=TIERED)
        result = edit.set_values(store, "dev", ["%s=%s" % (key, text)])
        got = ProfileStore(tmp, {}).resolve("dev").get(key)
        if field.unit == "seconds":
            assert math.isclose(_magnitude(field, got), want, rel_tol=1e-9, abs_tol=1e-12)
        elif field.unit == "bytes":
            assert _magnitude(field, got) == want
        else:
            assert got == want and type(got) is type(want), (got, want)
        assert (Path(tmp) / "dev.toml").read_text() == result.after
        ops = changed_lines(TIERED, result.after)
        after = toml_lines(result.after)
        leaf = key.rsplit(".", 1)[-1]
        if not ops:
            assert not result.written and result.after == TIERED
            return
        assert len(ops) == 1, ops
        tag, i1, i2, j1, j2 = ops[0]
        if tag == "replace":  # a key edited in place: its line only, inline comment kept
            assert i2 - i1 == 1 and j2 - j1 == 1, ops
            old_line, new_line = toml_lines(TIERED)[i1], after[j1]
            assert old_line.split("=")[0] == new_line.split("=")[0]
            comment = re.search(r"  +#[^\"'=]*$", old_line)
            assert comment is None or new_line.endswith(comment.group()), (old_line, new_line)
        else:
            assert tag == "insert", ops
            added = after[j1:j2]
            if len(added) == 1:  # a key added to an existing table (or a dotted key)
                assert re.match(r"^[\w.-]+ = ", added[0]), added
                assert added[0].split(" = ")[0].split(".")[-1] == leaf
            else:  # a new table at the end
                assert j2 == len(after) and added[0] == "\n", added
                assert added[1].startswith("[") and added[2].startswith(leaf + " = "), added
                assert len(added) == 3
        assert (Path(tmp) / "dev.toml.bak").read_text() == TIERED
        assert leftovers(tmp) == []


# -- refused edits -------------------------------------------------------------------------------
@pytest.mark.parametrize("assignments,where", [
    (["cache.max_entries=-1"], "cache.max_entries"),
    (["cache.policy=mru"], "cache.policy"),
    (["cache.max_entires=3"], "cache.max_entires"),
    (["alerts.warning_pct=99"], "alerts.warning_pct"),  # critical_pct is 95 (the default)
    (["caches.users.max_entries=-5"], "caches.users.max_entries"),
    (["cache=5"], "cache"),
    (["custom=5"], "custom"),
    (["caches.users=5"], "caches.users"),
    (["no equals sign"], None),
])
def test_invalid_edit_raises_and_leaves_everything_as_it_was(store, assignments, where):
    before = dev_path(store).read_bytes()
    with pytest.raises(ConfigError) as info:
        edit.set_values(store, "dev", assignments)
    assert not isinstance(info.value, WriteError)
    assert len(info.value.problems) == 1
    if where:
        assert ".".join(info.value.problems[0].path) == where
    assert dev_path(store).read_bytes() == before
    assert not os.path.exists(str(dev_path(store)) + ".bak")
    assert leftovers(store.directory) == []


def test_every_bad_assignment_is_reported_at_once(store):
    before = dev_path(store).read_bytes()
    with pytest.raises(ConfigError) as info:
        edit.set_values(store, "dev", ["cache.max_entires=3", "cache.policy=mru", "custom.ok=1",
                                       "profiler.history=lots", "cache.max_entries=-1",
                                       "pool.min_size=30"])
    messages = info.value.lines()
    assert len(messages) == 5, messages  # the unusable values, then what the rest would break
    assert "did you mean cache.max_entries?" in messages[0]
    assert any("cache.max_entries: -1 is below the minimum of 0" in m for m in messages[3:])
    assert any("min_size 30 is above max_size 20" in m for m in messages[3:])
    assert dev_path(store).read_bytes() == before  # custom.ok=1 was fine, but not alone


def test_dry_run_validates_reports_and_writes_nothing(store):
    before = dev_path(store).read_bytes()
    result = edit.set_values(store, "dev", ["cache.max_entries=7"], dry_run=True)
    assert not result.written and "max_entries = 7 " in result.after
    assert result.changes == [("cache.max_entries", 100, 7)]
    assert dev_path(store).read_bytes() == before
    assert not os.path.exists(str(dev_path(store)) + ".bak")
    with pytest.raises(ConfigError):
        edit.set_values(store, "dev", ["cache.max_entries=-7"], dry_run=True)


def test_no_op_edit_writes_nothing(store):
    result = edit.set_values(store, "dev", ["cache.max_entries=100"])
    assert not result.written and result.after == result.before and result.changes == []
    assert not os.path.exists(str(dev_path(store)) + ".bak")


# -- unset, reset, apply -------------------------------------------------------------------------
def test_unset_of_a_key_the_file_does_not_set(store):
    before = dev_path(store).read_bytes()
    with pytest.raises(ConfigError) as info:
        edit.unset_values(store, "dev", ["cache.policy"])
    assert str(info.value) == "cache.policy is not set in %s." % edit._show(store.path("dev"))
    with pytest.raises(ConfigError) as info:  # every missing key, and nothing removed
        edit.unset_values(store, "dev", ["cache.ttl", "pool.max_size", "custom.nope"])
    assert len(info.value.problems) == 2
    assert dev_path(store).read_bytes() == before


def test_reset_removes_a_key_the_base_does_not_set(store):
    result = edit.reset(store, "dev", ["profiler.interval"])
    assert 'interval = "2s"' not in result.after
    assert result.after == DEV.replace('interval = "2s"       # faster than the default\n', "")
    assert ProfileStore(store.directory, {}).resolve("dev").source("profiler.interval").kind \
        == "default"
    assert result.changes == [("profiler.interval", "2s", "1s")]


def test_reset_writes_the_default_when_the_base_sets_the_key(store):
    result = edit.reset(store, "dev", ["cache.ttl", "pool.max_size"])
    data = tomllib.loads(result.after)
    assert data["cache"]["ttl"] == 0  # in place: base says "1m", the default is 0
    assert 'ttl = 0            # after a blank line' in result.after
    assert data["pool"] == {"max_size": 10}  # dev did not set it: added
    resolved = ProfileStore(store.directory, {}).resolve("dev")
    assert resolved.get("cache.ttl") == 0 and resolved.get("pool.max_size") == 10


def test_reset_keeps_a_table_in_place_when_it_gets_a_default(store):
    edit.set_values(store, "dev", ["pool.min_size=2"])
    before = dev_path(store).read_text()
    result = edit.reset(store, "dev", ["pool"])  # min_size goes, max_size = 10 (base says 20)
    assert result.after == before.replace("[pool]\nmin_size = 2\n", "[pool]\nmax_size = 10\n")
    assert sorted(result.changes) == [("pool.max_size", 20, 10), ("pool.min_size", 2, 0)]


def test_reset_everything_keeps_environment_and_extends(store):
    result = edit.reset(store, "dev")
    data = tomllib.loads(result.after)
    assert data == {"extends": "base", "environment": "dev", "cache": {"ttl": 0},
                    "pool": {"max_size": 10}}
    assert result.after.startswith("# Development profile")
    resolved = ProfileStore(store.directory, {}).resolve("dev")
    for key, default in schema.defaults().items():
        assert schema.magnitude(schema.lookup(key), resolved.get(key)) == \
            schema.magnitude(schema.lookup(key), default), key
    assert resolved.get("custom.log_level") is None
    assert check_env(ProfileStore(store.directory, {}), "dev") == []
    with pytest.raises(ConfigError):
        edit.reset(store, "dev", ["extends"])


def test_reset_of_named_and_custom_keys_removes_them(store):
    result = edit.reset(store, "dev", ["caches.orders", "custom.log_level"])
    assert "[caches.orders]" not in result.after and "[custom]" not in result.after


def test_apply_file_installs_the_exact_bytes(store, tmp_path):
    source = tmp_path / "new.toml"
    raw = b'# new profile\r\nextends = "base"\r\nenvironment = "dev"\r\n[cache]\r\nttl = "9m"\r\n'
    source.write_bytes(raw)
    old = dev_path(store).read_bytes()
    result = edit.apply_file(store, "dev", str(source))
    assert result.written and dev_path(store).read_bytes() == raw
    assert Path(str(dev_path(store)) + ".bak").read_bytes() == old
    assert ("cache.ttl", "5m", "9m") in result.changes
    # a new environment's file may be created by apply
    fresh = tmp_path / "staging.toml"
    fresh.write_text('extends = "base"\n')
    result = edit.apply_file(store, "staging", str(fresh))
    assert result.written and Path(store.path("staging")).read_text() == 'extends = "base"\n'
    assert not os.path.exists(store.path("staging") + ".bak")


@pytest.mark.parametrize("content", [
    'extends = "base"\n[cache]\nmax_entries = -1\n',
    'extends = "base"\nenvironment = "prod"\n',  # does not match the file name
    'extends = "nowhere"\n',
    "[cache\nttl = 1\n",
    '[cache]\nmax_entires = 1\n',
])
def test_apply_file_invalid_writes_nothing(store, tmp_path, content):
    source = tmp_path / "bad.toml"
    source.write_text(content)
    before = dev_path(store).read_bytes()
    with pytest.raises(ConfigError) as info:
        edit.apply_file(store, "dev", str(source))
    assert len(info.value.problems) == 1, info.value.lines()  # said once, not per check
    assert dev_path(store).read_bytes() == before
    assert not os.path.exists(str(dev_path(store)) + ".bak")
    assert leftovers(store.directory) == []
    with pytest.raises(ConfigError):
        edit.apply_file(store, "fresh", str(source))
    assert not os.path.exists(store.path("fresh"))


# -- the writer ----------------------------------------------------------------------------------
def test_bak_holds_the_previous_bytes_and_the_mode_is_kept(store):
    os.chmod(dev_path(store), 0o640)
    first = dev_path(store).read_bytes()
    edit.set_values(store, "dev", ["cache.max_entries=1"])
    second = dev_path(store).read_bytes()
    assert Path(str(dev_path(store)) + ".bak").read_bytes() == first
    edit.set_values(store, "dev", ["cache.max_entries=2"])
    assert Path(str(dev_path(store)) + ".bak").read_bytes() == second
    for path in (dev_path(store), Path(str(dev_path(store)) + ".bak")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, path
    assert leftovers(store.directory) == []


def test_write_atomic_refuses_a_file_changed_underneath(tmp_path):
    path = tmp_path / "dev.toml"
    path.write_bytes(b"a = 1\n")
    with pytest.raises(WriteError) as info:  # someone edited it after we read b"a = 0\n"
        edit.write_atomic(str(path), "a = 2\n", b"a = 0\n")
    assert "changed on disk" in str(info.value)
    with pytest.raises(WriteError):  # None: the file must not exist yet
        edit.write_atomic(str(path), "a = 2\n", None)
    assert path.read_bytes() == b"a = 1\n" and leftovers(tmp_path) == []
    edit.write_atomic(str(path), "a = 2\n", b"a = 1\n")
    assert path.read_bytes() == b"a = 2\n"
    edit.write_atomic(str(tmp_path / "new.toml"), "b = 1\n", None)
    assert (tmp_path / "new.toml").read_text() == "b = 1\n"


def test_a_held_lock_makes_the_writer_give_up_cleanly(store, monkeypatch):
    monkeypatch.setattr(safe_write, "LOCK_TIMEOUT", 0.3)
    before = dev_path(store).read_bytes()
    lock = os.path.join(store.directory, ".dev.toml.lock")
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(WriteError) as info:
            edit.set_values(store, "dev", ["cache.max_entries=1"])
        assert str(info.value) == "Another memtui is writing %s; try again." % edit._show(
            store.path("dev"))
        assert edit.set_values(store, "dev", ["cache.max_entries=1"], dry_run=True).after
    assert dev_path(store).read_bytes() == before
    edit.set_values(store, "dev", ["cache.max_entries=1"])  # released: it goes through


WRITER = r"""
import os, sys, time
from memtui.config import edit
from memtui.config.errors import WriteError
from memtui.config.profiles import ProfileStore
directory, tag, go = sys.argv[1:4]
while not os.path.exists(go):
    time.sleep(0.001)
store = ProfileStore(directory, {})
failed = 0
for i in range(20):
    key = "custom.%s_%d" % (tag, i) if tag == "a" else "caches.%s%d.max_entries" % (tag, i)
    try:
        edit.set_values(store, "dev", ["%s=%d" % (key, i + 1)])
    except WriteError as exc:
        failed += 1
        print("FAILED", exc)
print("DONE", failed)
"""


def test_two_concurrent_writers_both_land(store, tmp_path):
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store.directory, tag, str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for tag in ("a", "b")]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip().endswith("DONE 0"), out  # each waited its turn on the lock
    data = tomllib.loads(dev_path(store).read_text())
    assert all(data["custom"]["a_%d" % i] == i + 1 for i in range(20)), data["custom"]
    assert all(data["caches"]["b%d" % i]["max_entries"] == i + 1 for i in range(20))
    assert check_env(ProfileStore(store.directory, {}), "dev") == []
    assert dev_path(store).read_text().startswith(DEV)  # nothing of the original lost
    assert leftovers(store.directory) == []


# -- writes that fail ----------------------------------------------------------------------------
GROW = ["custom.padding=%s" % ("x" * 6000)]


def assert_one_sentence(error: WriteError, path: str, reason: str) -> None:
    message = str(error)
    assert message.startswith("Cannot write %s: " % edit._show(path)), message
    assert reason in message and message.endswith("; the file is unchanged."), message
    assert message.count(". ") == 0 and "\n" not in message, message


def test_file_size_limit_efbig(store):
    """RLIMIT_FSIZE in a forked child: the temp file's write fails with EFBIG (SIGXFSZ ignored)."""
    before = dev_path(store).read_bytes()

    def child():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 100, resource.RLIM_INFINITY))
        try:
            edit.set_values(store, "dev", GROW)
        except WriteError as exc:
            return str(exc)
        return None

    message = run_in_fork(child)
    assert message is not None
    assert_one_sentence(WriteError(message), store.path("dev"), "File too large")
    assert dev_path(store).read_bytes() == before
    assert Path(str(dev_path(store)) + ".bak").read_bytes() == before  # it fit; the new text not
    assert leftovers(store.directory) == []


@pytest.fixture
def tiny_fs():
    """A 64 KiB tmpfs (root only); skipped where mounting is not possible."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    where = tempfile.mkdtemp(prefix="mt-full-", dir="/tmp")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", where],
                          capture_output=True)
    if done.returncode != 0:
        os.rmdir(where)
        pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.decode().strip())
    yield where
    subprocess.run(["umount", where], check=True)
    os.rmdir(where)


def _fill(directory: str, leave_pages: int) -> None:
    """Fill the filesystem, then free *leave_pages* pages."""
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096) == 4096:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    size = os.path.getsize(filler) // 4096 * 4096
    os.truncate(filler, max(0, size - leave_pages * 4096))


@pytest.mark.parametrize("leave_pages", [0, 2])  # 0: the .bak cannot be written; 2: the new text
def test_disk_full_enospc(tiny_fs, leave_pages):
    store = make_profiles(os.path.join(tiny_fs, "profiles"), dev=DEV + "# " + "-" * 5000 + "\n")
    before = dev_path(store).read_bytes()
    open(os.path.join(store.directory, ".dev.toml.lock"), "w").close()
    _fill(tiny_fs, leave_pages)
    with pytest.raises(WriteError) as info:
        edit.set_values(store, "dev", GROW)
    assert_one_sentence(info.value, store.path("dev"), "No space left on device")
    assert dev_path(store).read_bytes() == before
    bak = Path(str(dev_path(store)) + ".bak")
    if leave_pages:  # the .bak went through (it equals the file), the new text did not
        assert bak.read_bytes() == before
    else:
        assert not bak.exists()
    assert leftovers(store.directory) == []


def test_missing_profiles_directory(tmp_path):
    store = ProfileStore(str(tmp_path / "nope"), {})
    source = tmp_path / "new.toml"
    source.write_text('environment = "dev"\n')
    for attempt in (lambda: edit.set_values(store, "dev", ["cache.ttl=1"]),
                    lambda: edit.set_values(store, "dev", ["cache.ttl=1"], dry_run=True),
                    lambda: edit.apply_file(store, "dev", str(source))):
        with pytest.raises(WriteError) as info:
            attempt()
        assert str(info.value) == ("Cannot write %s: the directory %s does not exist; nothing was "
                                   "written." % (edit._show(store.path("dev")),
                                                 edit._show(store.directory)))
    assert not (tmp_path / "nope").exists()


def test_missing_env_file_is_refused_except_by_apply(store):
    with pytest.raises(WriteError) as info:
        edit.set_values(store, "staging", ["cache.ttl=1"])
    assert "does not exist" in str(info.value)
    assert not os.path.exists(store.path("staging"))


def test_env_file_that_is_a_directory(store, tmp_path):
    os.mkdir(store.path("qa"))
    source = tmp_path / "qa.toml"
    source.write_text('environment = "qa"\n')
    for attempt in (lambda: edit.set_values(store, "qa", ["cache.ttl=1"]),
                    lambda: edit.apply_file(store, "qa", str(source))):
        with pytest.raises(WriteError) as info:
            attempt()
        assert "it is a directory" in str(info.value)
    assert os.path.isdir(store.path("qa")) and os.listdir(store.path("qa")) == []
    assert leftovers(store.directory) == []


def test_profiles_path_that_is_a_file(tmp_path):
    (tmp_path / "profiles").write_text("not a directory\n")
    store = ProfileStore(str(tmp_path / "profiles"), {})
    with pytest.raises(WriteError) as info:
        edit.set_values(store, "dev", ["cache.ttl=1"])
    assert "not a directory" in str(info.value)
    assert (tmp_path / "profiles").read_text() == "not a directory\n"


@pytest.fixture
def chattr():
    if not shutil.which("chattr"):
        pytest.skip("no chattr")
    undo = []

    def set_immutable(path: str) -> None:
        done = subprocess.run(["chattr", "+i", path], capture_output=True)
        if done.returncode != 0:
            pytest.skip("chattr +i not supported here: %s" % done.stderr.decode().strip())
        undo.append(path)

    yield set_immutable
    for path in undo:
        subprocess.run(["chattr", "-i", path], check=True)


def test_immutable_file_fails_at_the_rename(store, chattr):
    """chattr +i: the lock, the .bak and the temp file can be written; os.replace gets EPERM."""
    before = dev_path(store).read_bytes()
    chattr(str(dev_path(store)))
    with pytest.raises(WriteError) as info:
        edit.set_values(store, "dev", ["cache.max_entries=1"])
    assert_one_sentence(info.value, store.path("dev"), "Operation not permitted")
    assert dev_path(store).read_bytes() == before
    assert leftovers(store.directory) == []


def test_immutable_directory(store, chattr):
    edit.set_values(store, "dev", ["cache.max_entries=1"])  # lock file and .bak exist
    before = dev_path(store).read_bytes()
    chattr(store.directory)
    with pytest.raises(WriteError) as info:
        edit.set_values(store, "dev", ["cache.max_entries=2"])
    assert_one_sentence(info.value, store.path("dev"), "Operation not permitted")
    assert dev_path(store).read_bytes() == before


@needs_root
def test_read_only_directory_for_another_user(tmp_path):
    """As uid 65534 in a forked child: a root-owned 0755 directory cannot take temp files."""
    base = tempfile.mkdtemp(prefix="mt-ro-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        store = make_profiles(os.path.join(base, "profiles"))
        open(os.path.join(store.directory, ".dev.toml.lock"), "w").close()
        before = dev_path(store).read_bytes()

        def child():
            as_nobody()
            try:
                edit.set_values(store, "dev", ["cache.max_entries=1"])
            except WriteError as exc:
                return str(exc)
            return None

        message = run_in_fork(child)
        assert message is not None
        assert_one_sentence(WriteError(message), store.path("dev"), "Permission denied")
        assert dev_path(store).read_bytes() == before
        assert leftovers(store.directory) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_exception_mid_write_removes_the_temp_file(store, monkeypatch):
    """Fault injection (a real EIO at rename time cannot be produced here): os.replace fails for
    the profile itself, after the .bak and the temp file were written."""
    before = dev_path(store).read_bytes()
    real_replace = os.replace

    def failing_replace(src, dst):
        if os.path.abspath(dst) == os.path.abspath(store.path("dev")):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(WriteError) as info:
        edit.set_values(store, "dev", ["cache.max_entries=1"])
    assert_one_sentence(info.value, store.path("dev"), "Input/output error")
    assert dev_path(store).read_bytes() == before
    assert leftovers(store.directory) == []


# -- review findings -----------------------------------------------------------------------------
def _envs(directory, **files) -> ProfileStore:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / (name + ".toml")).write_text(text)
    return ProfileStore(str(directory), {})


def test_editing_a_base_checks_every_env_that_extends_it(tmp_path):
    store = _envs(tmp_path, base="[pool]\nmax_size = 20\n",
                  dev='extends = "base"\nenvironment = "dev"\n[pool]\nmax_size = 4\n',
                  prod='extends = "base"\nenvironment = "prod"\n',
                  other='environment = "other"\n[pool]\nmax_size = 1\n')
    before = Path(store.path("base")).read_bytes()
    for dry_run in (True, False):
        with pytest.raises(ConfigError) as info:
            edit.set_values(store, "base", ["pool.min_size=6"], dry_run=dry_run)
        assert info.value.lines() == [
            store.path("base") + "::$.pool.min_size: min_size 6 is above max_size 4 (in dev)"]
        assert "base.toml would break dev" in str(info.value), str(info.value)
    assert Path(store.path("base")).read_bytes() == before
    assert not os.path.exists(store.path("base") + ".bak")
    # what breaks no environment goes through; prod (max_size 20) and other are fine with 3
    assert edit.set_values(store, "base", ["pool.min_size=3"]).written
    # unset too: base's max_size going leaves dev alone (it sets its own)
    assert edit.unset_values(store, "base", ["pool.max_size"]).written


def test_an_edit_may_leave_problems_the_file_already_had(tmp_path):
    store = _envs(tmp_path, dev='environment = "dev"\n[cache]\nttl = -5\nmax_entries = 10\n'
                               '[caches.users]\nttl = -7\n')
    result = edit.set_values(store, "dev", ["cache.max_entries=20"])
    assert result.written and result.changes == [("cache.max_entries", 10, 20)]
    assert [str(p).split("::")[1] for p in result.remaining] == [
        "$.cache.ttl: -5s is below the minimum of 0s",
        "$.caches.users.ttl: -7s is below the minimum of 0s"]
    # repaired key by key: each edit removes one problem, the other remains
    result = edit.set_values(store, "dev", ["cache.ttl=5"])
    assert result.written and [p.path for p in result.remaining] == [("caches", "users", "ttl")]
    result = edit.unset_values(store, "dev", ["caches.users.ttl"])
    assert result.written and result.remaining == []
    # a problem the edit brings is still refused, and only it is reported
    (Path(store.path("dev"))).write_text('environment = "dev"\n[cache]\nttl = -5\n')
    with pytest.raises(ConfigError) as info:
        edit.set_values(store, "dev", ["pool.max_size=0"])
    assert [p.path for p in info.value.problems] == [("pool", "max_size")]
    assert "1 problem" in str(info.value) and "already had" in str(info.value), str(info.value)


@pytest.mark.parametrize("key", ["custom.db_password", "custom.api_token", "custom.db.secret"])
def test_the_mask_placeholder_is_refused_as_a_secret_value(store, tmp_path, key):
    before = dev_path(store).read_bytes()
    with pytest.raises(ConfigError) as info:
        edit.set_values(store, "dev", ["%s=%s" % (key, schema.MASK)])
    assert len(info.value.problems) == 1
    assert "mask placeholder from a masked export" in info.value.lines()[0]
    assert "--show-secrets" in info.value.lines()[0]
    source = tmp_path / "export.toml"
    parts = key.split(".")
    source.write_text('extends = "base"\nenvironment = "dev"\n[%s]\n%s = "%s"\n'
                      % (".".join(parts[:-1]), parts[-1], schema.MASK))
    with pytest.raises(ConfigError) as info:
        edit.apply_file(store, "dev", str(source))
    assert info.value.lines() == [str(source) + "::$.%s: %s is the mask placeholder from a "
                                  "masked export, not the secret; export with --show-secrets"
                                  % (key, schema.MASK)]
    assert dev_path(store).read_bytes() == before
    # not a secret: any text goes
    assert edit.set_values(store, "dev", ["custom.note=%s" % schema.MASK]).written


def test_reset_of_a_per_name_key_another_file_sets_is_refused_with_the_file(tmp_path):
    store = _envs(tmp_path, base='[caches.sessions]\nttl = "20s"\n[custom]\nflag = true\n',
                  dev='extends = "base"\nenvironment = "dev"\n[caches.orders]\nttl = "1m"\n')
    before = Path(store.path("dev")).read_bytes()
    with pytest.raises(ConfigError) as info:
        edit.reset(store, "dev", ["caches.sessions.ttl"])
    assert info.value.lines() == [
        store.path("dev") + "::$.caches.sessions.ttl: caches.sessions.ttl is set in base.toml; "
        "per-name keys have no schema default — unset it there (--env base) or set it here"]
    with pytest.raises(ConfigError) as info:  # a bare reset says so too, for every such key
        edit.reset(store, "dev")
    assert [".".join(p.path) for p in info.value.problems] == ["caches.sessions.ttl",
                                                               "custom.flag"]
    assert "custom keys have no schema default" in info.value.lines()[1]
    assert Path(store.path("dev")).read_bytes() == before
    # set in this file: removed
    result = edit.reset(store, "dev", ["caches.orders.ttl"])
    assert result.written and "caches.orders" not in result.after


def test_no_lock_file_for_an_env_that_does_not_exist(store, tmp_path):
    for attempt in (lambda: edit.set_values(store, "prodd", ["cache.ttl=1"]),
                    lambda: edit.unset_values(store, "prodd", ["cache.ttl"]),
                    lambda: edit.reset(store, "prodd")):
        with pytest.raises(WriteError):
            attempt()
    assert sorted(os.listdir(store.directory)) == ["base.toml", "dev.toml"]
    source = tmp_path / "new.toml"
    source.write_text('extends = "base"\nenvironment = "prodd"\n')
    assert edit.apply_file(store, "prodd", str(source), dry_run=True).backup is None
    assert sorted(os.listdir(store.directory)) == ["base.toml", "dev.toml"]
    result = edit.apply_file(store, "prodd", str(source))  # a new env: no .bak to claim
    assert result.written and result.backup is None
    assert not os.path.exists(store.path("prodd") + ".bak")


def test_the_result_names_the_backup_it_wrote(store, tmp_path):
    assert edit.set_values(store, "dev", ["cache.max_entries=1"], dry_run=True).backup is None
    result = edit.set_values(store, "dev", ["cache.max_entries=1"])
    assert result.backup == store.path("dev") + ".bak" and os.path.exists(result.backup)
    assert edit.set_values(store, "dev", ["cache.max_entries=1"]).backup is None  # no-op
    # a profile that is a symlink: the real file is replaced, its .bak lies next to it
    real = tmp_path / "elsewhere" / "dev.toml"
    real.parent.mkdir()
    real.write_bytes(dev_path(store).read_bytes())
    dev_path(store).unlink()
    dev_path(store).symlink_to(real)
    result = edit.set_values(store, "dev", ["cache.max_entries=2"])
    assert result.backup == str(real) + ".bak" and os.path.exists(result.backup)
    assert os.path.islink(store.path("dev")) and "max_entries = 2" in real.read_text()


def test_a_byte_order_mark_is_named_and_apply_can_replace_the_file(store, tmp_path):
    bom = b"\xef\xbb\xbf" + dev_path(store).read_bytes()
    dev_path(store).write_bytes(bom)
    with pytest.raises(ConfigError) as info:
        edit.set_values(store, "dev", ["cache.max_entries=1"])
    assert "starts with a byte-order mark; save it as UTF-8 without BOM" in str(info.value)
    assert dev_path(store).read_bytes() == bom
    source = tmp_path / "fixed.toml"
    source.write_bytes(bom)
    with pytest.raises(ConfigError) as info:
        edit.apply_file(store, "dev", str(source))
    assert info.value.lines() == [
        str(source) + "::$: starts with a byte-order mark; save it as UTF-8 without BOM"]
    source.write_bytes(bom[3:])
    assert edit.apply_file(store, "dev", str(source)).written
    assert dev_path(store).read_bytes() == bom[3:]

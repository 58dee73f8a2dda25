"""The schema kept in sync with what acts on it: every value the schema accepts for a key the
agent or a component acts on is accepted by the real thing, and a value just outside an exclusive
bound is refused by both (config as data with a schema that a test keeps in sync)."""
from __future__ import annotations

import pytest

import memtui
from memtui.agent.core import settings_for
from memtui.agent.options import AgentOptions
from memtui.config import schema
from memtui.config.profiles import AGENT_KEYS, ProfileStore, agent_options, component_settings
from memtui.config.validate import check_env

# section -> (the agent's component kind, a block built with register=False)
BLOCKS = {
    "cache": ("cache", lambda: memtui.Cache(name="sync", register=False)),
    "pool": ("pool", lambda: memtui.ResourcePool(object, name="sync", register=False)),
    "workers": ("workers", lambda: memtui.WorkerPool(min_workers=0, name="sync",
                                                     register=False)),
    "execution": ("batch", lambda: memtui.BatchProcessor(lambda items: items, name="sync",
                                                         register=False)),
}
# values set with a key so that its whole range can pass the cross-field rules
COMPANIONS = {
    "cache.policy": {"ttl": "5m"},
    "pool.min_size": {"max_size": 1024},
    "pool.default_size": {"max_size": 1024},
    "pool.scale_up_threshold": {"scale_down_threshold": 0},
    "pool.scale_down_threshold": {"scale_up_threshold": 1},
    "workers.min_workers": {"max_workers": 1024},
    "alerts.warning_pct": {"critical_pct": 100},
    "alerts.critical_pct": {"warning_pct": 0.01},
}
STEP = {"bytes": 1, "seconds": 0.001, "percent": 0.1, "fraction": 0.001}


def _step(field: schema.Field) -> float:
    return 1 if field.types[0] == "integer" else STEP.get(field.unit or "", 0.001)


def _inside(field: schema.Field) -> list:
    """Values the schema accepts for *field*: its bounds (just inside an exclusive one), its
    default, every choice of an enum; durations also as strings with a unit."""
    spec = field.spec
    if "enum" in spec:
        return list(spec["enum"])
    values = [spec[k] for k in ("minimum", "maximum", "default") if k in spec]
    if "exclusiveMinimum" in spec:
        values.append(spec["exclusiveMinimum"] + _step(field))
    if "exclusiveMaximum" in spec:
        values.append(spec["exclusiveMaximum"] - _step(field))
    if field.unit == "seconds":
        values += [_ms(schema.magnitude(field, v)) for v in list(values)]
    return values


def _ms(seconds: float) -> str:
    return ("%.3f" % (seconds * 1000)).rstrip("0").rstrip(".") + "ms"


def _outside(field: schema.Field) -> list:
    """Values just outside an exclusive bound: the bound itself."""
    spec = field.spec
    values = [spec[k] for k in ("exclusiveMinimum", "exclusiveMaximum") if k in spec]
    if field.unit == "seconds":
        values += ["%gs" % v for v in list(values)]
    return values


def _keys(applies: str) -> list:
    return [f.key for f in schema.leaves() if f.applies == applies]


def _resolved(tmp_path, key: str, value):
    section, leaf = key.split(".", 1)
    body = dict(COMPANIONS.get(key, {}), **{leaf: value})
    store = ProfileStore(str(tmp_path), {}).with_content("dev", {section: body})
    return store, store.resolve("dev", environ={})


def _component_cases():
    for key in _keys("components"):
        field = schema.lookup(key)
        for value in _inside(field):
            yield pytest.param(key, value, True, id="%s=%r" % (key, value))
        for value in _outside(field):
            yield pytest.param(key, value, False, id="%s=%r!" % (key, value))


def test_every_component_key_is_a_live_setting_of_its_block():
    missing = []
    for key in _keys("components"):
        section, leaf = key.split(".", 1)
        block = BLOCKS[section][1]()
        try:
            if leaf not in block.SETTINGS:
                missing.append(key)
        finally:
            _close(block)
    assert missing == []


def _close(block) -> None:
    for name in ("close", "shutdown"):
        if hasattr(block, name):
            getattr(block, name)()
            return


@pytest.mark.parametrize("key, value, accepted", list(_component_cases()))
def test_component_keys_schema_and_block_agree(tmp_path, key, value, accepted):
    """The whole resolved section (schema defaults, the value and its companions), as a profile
    that sets every key would hand it to the block (x-zero values as None)."""
    store, resolved = _resolved(tmp_path, key, value)
    problems = check_env(store, "dev", environ={})
    section = key.split(".", 1)[0]
    kind, build = BLOCKS[section]
    block = build()
    try:
        full = {leaf: schema.component_value(schema.lookup("%s.%s" % (section, leaf)),
                                             resolved.get("%s.%s" % (section, leaf)))
                for leaf in block.SETTINGS if schema.lookup("%s.%s" % (section, leaf))}
        as_set = settings_for(component_settings(resolved), kind, "sync")
        if accepted:
            assert problems == [], [str(p) for p in problems]
            block.preview(full)
            block.preview({k: v for k, v in as_set.items() if k in block.SETTINGS})
        else:
            assert tuple(key.split(".")) in [p.path for p in problems], \
                [str(p) for p in problems]
            with pytest.raises(ValueError):
                block.preview(full)
    finally:
        _close(block)


def _agent_cases():
    for key in AGENT_KEYS:
        field = schema.lookup(key)
        if key == "environment":
            continue
        for value in _inside(field):
            yield pytest.param(key, value, True, id="%s=%r" % (key, value))
        for value in _outside(field):
            yield pytest.param(key, value, False, id="%s=%r!" % (key, value))


def test_agent_keys_are_the_agent_keys_of_the_schema():
    agent = {k for k in _keys("agent") if k.startswith(("profiler.", "alerts."))}
    assert set(AGENT_KEYS) - {"environment"} <= agent


@pytest.mark.parametrize("key, value, accepted", list(_agent_cases()))
def test_agent_keys_schema_and_agent_options_agree(tmp_path, key, value, accepted):
    store, resolved = _resolved(tmp_path, key, value)
    problems = check_env(store, "dev", environ={})
    options = agent_options(resolved)
    if accepted:
        assert problems == [], [str(p) for p in problems]
        AgentOptions.from_mapping(options)
    else:
        assert tuple(key.split(".")) in [p.path for p in problems], [str(p) for p in problems]
        with pytest.raises(ValueError):
            AgentOptions.from_mapping(options)

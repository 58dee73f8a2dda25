"""The agent side must stay light and UI-free: checked in a fresh interpreter and by reading imports."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "memtui"
FORBIDDEN = ("textual", "rich", "typer", "click", "tomlkit", "jsonschema")
# Not forbidden by the layering rule, but kept out of start-up on purpose: each costs 20-40 ms.
LAZY = ("psutil", "logging", "tracemalloc")


@pytest.mark.parametrize("module", ["memtui", "memtui.agent", "memtui.protocol", "memtui.client",
                                    "memtui.paths", "memtui.config", "memtui.config.profiles",
                                    "memtui.tui.model", "memtui.tui.feed"])
def test_fresh_import_loads_no_ui_or_config_libraries(module):
    code = ("import sys, json; import %s; "
            "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))" % module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(ROOT), check=True).stdout
    loaded = set(json.loads(out))
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def _started_modules(runtime_dir, cwd, code="a = memtui.start(serve=True)", env=None):
    code = ("import sys, json, memtui; %s; assert a is not None; "
            "import time; time.sleep(0.05); "
            "print(json.dumps(sorted(sys.modules)))" % code)
    full = {"PATH": "/usr/bin:/bin", "MEMTUI_RUNTIME_DIR": runtime_dir,
            "PYTHONPATH": str(ROOT)}
    full.update(env or {})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(cwd), env=full)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


def test_started_agent_loads_nothing_heavy(runtime_dir, tmp_path):
    loaded = {m.split(".")[0] for m in _started_modules(runtime_dir, tmp_path)}
    assert not loaded & set(FORBIDDEN + LAZY), sorted(loaded & set(FORBIDDEN + LAZY))


def test_without_profiles_start_does_not_even_import_the_config_package(runtime_dir, tmp_path):
    loaded = _started_modules(runtime_dir, tmp_path)
    assert not {"memtui.config", "tomllib"} & loaded


def test_started_agent_with_a_profile_loads_it_with_the_standard_library_only(runtime_dir,
                                                                             tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "dev.toml").write_text(
        '[profiler]\ninterval = "250ms"\n[cache]\nmax_entries = 5\n'
        '[tuner]\ngc_thresholds = [900, 10, 10]\n')
    loaded = _started_modules(runtime_dir, tmp_path, env={"MEMTUI__CACHE__TTL": "5m"})
    assert {"memtui.config.profiles", "tomllib"} <= loaded  # it did read the profile
    top = {m.split(".")[0] for m in loaded}
    assert not top & set(FORBIDDEN + LAZY), sorted(top & set(FORBIDDEN + LAZY))


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def _files(*rel: str):
    for r in rel:
        p = PKG / r
        if p.is_dir():
            yield from sorted(p.rglob("*.py"))
        elif p.exists():
            yield p


def test_agent_side_imports_only_stdlib_and_psutil():
    allowed = set(sys.stdlib_module_names) | {"memtui", "psutil", "_tracemalloc"}
    bad = []
    # config/{__init__,errors,profiles,schema}.py are what the agent loads a profile with
    for f in _files("agent", "runtime", "protocol.py", "client.py", "paths.py", "__init__.py",
                    "config/__init__.py", "config/errors.py", "config/profiles.py",
                    "config/schema.py"):
        for name in _imports(f):
            if name not in allowed:
                bad.append("%s imports %s" % (f.relative_to(ROOT), name))
    assert not bad, bad


def test_textual_only_in_tui_and_typer_only_in_cli():
    bad = []
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG).as_posix()
        names = set(_imports(f))
        if "textual" in names and not rel.startswith("tui/"):
            bad.append(rel + " imports textual")
        if ("typer" in names or "click" in names) and not (rel == "cli.py"
                                                             or rel.startswith("cli/")):
            bad.append(rel + " imports typer/click")
    assert not bad, bad


def test_public_blocks_resolve_lazily_and_import_memtui_stays_light():
    code = ("import sys, json, memtui; light = [m for m in ('asyncio', 'sqlite3', 'pickle', 'zlib')"
            " if m in sys.modules]; names = [n for n in memtui._LAZY if getattr(memtui, n) is None];"
            " print(json.dumps([light, names, sorted(set(memtui._LAZY) - set(dir(memtui)))]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(ROOT), check=True).stdout
    assert json.loads(out) == [[], [], []]


def test_all_lists_every_lazy_export():
    import memtui

    assert set(memtui._LAZY) <= set(memtui.__all__)

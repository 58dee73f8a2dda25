"""``memtui config``: show, get, set, unset, validate, diff, export, apply, reset, schema, explain,
envs and push environment profiles. All the work is in ``memtui.config``; this is the surface:
the reading and checking commands here, the edits in ``config_edit``, push in ``config_push``.

Exit codes: 0 ok; 1 a check failed (invalid profile, a missing key, environments differ, a value
refused); 2 usage or runtime error (a write that could not happen, no agent, no such environment,
a profile ``diff`` cannot read)."""
from __future__ import annotations

import enum
import json
import os
import sys
from typing import List, Optional

import typer

from ..config import ConfigError, WriteError
from ..config import diff as cdiff
from ..config import profiles as cprofiles
from ..config import schema
from . import config_view as view
from ._common import EXIT_CHECK, EXIT_ERROR, UsageFailure, console, json_default, print_json
from .config_common import (CheckFailed, EnvOpt, JsonOpt, ProfilesOpt, SecretsOpt, SetOpt,
                            config_app, env_name, handle, need_profile, profile_store,
                            resolve_env, short_sources)

__all__ = ["CheckFailed", "config_app", "handle"]  # what memtui.cli takes from here


class ValidateFormat(str, enum.Enum):
    text = "text"
    json = "json"


class DiffFormat(str, enum.Enum):
    table = "table"
    unified = "unified"
    json = "json"


class ExportFormat(str, enum.Enum):
    toml = "toml"
    json = "json"


# -- reading --------------------------------------------------------------------------------------
@config_app.command()
def show(env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
         set_: Optional[List[str]] = SetOpt, json_: bool = JsonOpt,
         flat: bool = typer.Option(False, "--flat", help="KEY = VALUE lines, one per key."),
         only_set: bool = typer.Option(False, "--only-set", help="Leave out schema defaults."),
         show_secrets: bool = SecretsOpt) -> None:
    """Every value of an environment with its type and where it came from."""
    resolved = resolve_env(profile_store(profiles), env, set_)
    if json_:
        print_json(resolved.to_json(mask=not show_secrets))
    elif flat:
        for line in view.flat_lines(resolved, mask=not show_secrets):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    else:
        console.print(view.show_table(resolved, mask=not show_secrets, only_set=only_set))


@config_app.command()
def get(key: str = typer.Argument(..., help="Dotted key, e.g. cache.max_entries."),
        env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
        set_: Optional[List[str]] = SetOpt, show_secrets: bool = SecretsOpt) -> None:
    """The value only (script-friendly); a key with no value exits 1."""
    resolved = resolve_env(profile_store(profiles), env, set_)
    value = view.effective(resolved, key)
    if value is cdiff.MISSING:
        if schema.lookup(key) is None:
            raise CheckFailed(_capital(schema.unknown_key_message(key)))
        raise CheckFailed("%s has no value in %s." % (key, resolved.env))
    value = cprofiles.masked(key, value, not show_secrets)
    if isinstance(value, (dict, list)):
        print_json(value)
    else:
        console.print(view.value_text(value), highlight=False, markup=False, soft_wrap=True)


@config_app.command()
def explain(key: str = typer.Argument(..., help="Dotted key, e.g. caches.users.max_entries."),
            env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
            set_: Optional[List[str]] = SetOpt, show_secrets: bool = SecretsOpt) -> None:
    """What a key means and every layer that could set it, strongest first, the winner marked."""
    if schema.lookup(key) is None:
        raise CheckFailed(_capital(schema.unknown_key_message(key)))
    resolved = resolve_env(profile_store(profiles), env, set_)
    console.print(view.explain(key, resolved, mask=not show_secrets))


@config_app.command()
def envs(profiles: Optional[str] = ProfilesOpt, json_: bool = JsonOpt) -> None:
    """The environments (and base files) in the profiles directory."""
    store = profile_store(profiles)
    try:
        active: Optional[str] = cprofiles.active_env(None, store.environ)
    except ConfigError:
        active = None  # $MEMTUI_ENV is no environment name: list the directory anyway
    environments = store.envs()
    rows = []
    for name in store.names():
        try:
            data = store.read(name)
            problem = None
        except ConfigError as exc:
            data, problem = {}, exc.lines()[0]
        rows.append({"name": name, "file": store.path(name), "extends": data.get("extends"),
                     "base": name not in environments, "active": name == active,
                     "keys": len(cprofiles.flatten({k: v for k, v in data.items()
                                                    if k not in ("extends", "environment")})),
                     "error": problem})
    if json_:
        print_json({"directory": store.directory, "active": active, "profiles": rows})
        return
    if not rows:
        raise UsageFailure("No profiles in %s" % view.short_path(store.directory))
    from rich.table import Table  # noqa: PLC0415

    table = Table(show_edge=False, pad_edge=False)
    for col in ("", "env", "file", "extends", "keys set", ""):
        table.add_column(col)
    for row in rows:
        table.add_row("*" if row["active"] else "", row["name"] + (" (base)" if row["base"] else ""),
                      view.short_path(row["file"]), row["extends"] or "", str(row["keys"]),
                      row["error"] or "")
    console.print(table)


@config_app.command("schema")
def schema_cmd(keys: bool = typer.Option(False, "--keys", help="A table of every key instead of "
                                                              "the JSON Schema document.")) -> None:
    """The JSON Schema (2020-12) profiles are validated against."""
    if keys:
        console.print(view.schema_keys_table())
        return
    with open(schema.SCHEMA_PATH, encoding="utf-8") as fh:
        sys.stdout.write(fh.read())


# -- checking and comparing -----------------------------------------------------------------------
@config_app.command()
def validate(file: Optional[str] = typer.Argument(None, help="A profile file to check alone."),
             env: Optional[str] = EnvOpt, all_: bool = typer.Option(False, "--all",
                                                                    help="Every profile."),
             profiles: Optional[str] = ProfilesOpt, set_: Optional[List[str]] = SetOpt,
             format_: ValidateFormat = typer.Option(ValidateFormat.text, "--format", "-f")
             ) -> None:
    """Check profiles against the schema and the cross-field rules; every error, exit 1."""
    from ..config import validate as cvalidate  # noqa: PLC0415  (jsonschema: only when validating)

    if sum(bool(x) for x in (file, env, all_)) > 1:
        raise UsageFailure("Give one of FILE, --env or --all")
    store = profile_store(profiles)
    if file:
        problems, checked = cvalidate.check_file(file), [file]
    elif all_:
        if not store.names():
            raise UsageFailure("No profiles in %s" % view.short_path(store.directory))
        problems, checked = cvalidate.check_all(store), [store.path(n) for n in store.names()]
    else:
        name = env_name(store, env)
        need_profile(store, name)
        problems = cvalidate.check_env(store, name, set_ or ())
        checked = [store.path(name)]
    if format_ is ValidateFormat.json:
        print_json({"valid": not problems, "checked": checked,
                    "problems": cvalidate.problems_json(problems)})
    else:
        for p in problems:
            console.print(str(p._replace(source=view.short_path(p.source))), highlight=False,
                          markup=False, soft_wrap=True)
        if not problems:
            console.print("Valid: %s." % ", ".join(view.short_path(c) for c in checked),
                          style="green", highlight=False)
    if problems:
        raise typer.Exit(EXIT_CHECK)


@config_app.command("diff")
def diff_cmd(names: Optional[List[str]] = typer.Argument(None, metavar="[ENV]...",
                                                         help="Environments (default: all)."),
             profiles: Optional[str] = ProfilesOpt,
             format_: DiffFormat = typer.Option(DiffFormat.table, "--format", "-f"),
             all_keys: bool = typer.Option(False, "--all-keys",
                                           help="Also keys no environment sets."),
             only_diff: bool = typer.Option(False, "--only-diff", help="Only differing keys."),
             show_secrets: bool = SecretsOpt) -> None:
    """Compare environments key by key (sizes and durations by magnitude); exit 1 if they differ."""
    store = profile_store(profiles)
    names = list(names or store.envs())
    if len(names) < 2:
        raise UsageFailure("Need two environments to compare; found %s in %s" % (
            ", ".join(names) or "none", view.short_path(store.directory)))
    for name in names:
        need_profile(store, env_name(store, name))
    try:  # exit 1 means "they differ": a profile that cannot be read is exit 2
        resolved = [store.resolve(n) for n in names]
    except ConfigError as exc:
        raise CheckFailed(*short_sources(exc), code=EXIT_ERROR) from None
    rows = cdiff.compare(resolved, mask=not show_secrets)
    shown = [r for r in rows if (all_keys or r.set_somewhere()) and (r.differs or not only_diff)]
    if format_ is DiffFormat.json:
        print_json(cdiff.to_json(resolved, shown))
    elif format_ is DiffFormat.unified:
        for other in resolved[1:]:
            pair = cdiff.compare([resolved[0], other], mask=not show_secrets)
            sys.stdout.write(cdiff.unified(resolved[0], other, pair))
    else:
        console.print(view.diff_table(resolved, shown))
    if cdiff.differs(rows):
        raise typer.Exit(EXIT_CHECK)


@config_app.command()
def export(env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
           set_: Optional[List[str]] = SetOpt,
           format_: ExportFormat = typer.Option(ExportFormat.toml, "--format", "-f"),
           output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE",
                                                help="Write here (atomically) instead of stdout."),
           show_secrets: bool = SecretsOpt) -> None:
    """The resolved profile (every layer applied, defaults filled in) as TOML or JSON."""
    resolved = resolve_env(profile_store(profiles), env, set_)
    flat = {k: cprofiles.masked(k, v, not show_secrets) for k, v in resolved.flat.items()}
    hidden = [k for k, v in flat.items() if v != resolved.flat[k]]
    values = cprofiles.nest(flat)
    if format_ is ExportFormat.json:
        text = json.dumps(values, indent=2, default=json_default) + "\n"
    else:
        import tomlkit  # noqa: PLC0415

        header = "# memtui profile %r resolved from %s\n" % (
            resolved.env, ", ".join(view.short_path(f) for f in resolved.files) or "defaults")
        text = header + tomlkit.dumps(values)
    if hidden:  # a masked export applied back would write ******** over the real values
        sys.stderr.write("Secrets are masked (%s) in %s: %s; pass --show-secrets for a profile "
                         "you can apply.\n" % (schema.MASK, output or "the output",
                                                ", ".join(sorted(hidden))))
    if output is None:
        sys.stdout.write(text)
        return
    from ..config import edit  # noqa: PLC0415

    try:
        with open(output, "rb") as fh:
            before: Optional[bytes] = fh.read()
    except FileNotFoundError:
        before = None
    except OSError as exc:
        raise WriteError("Cannot write %s: %s; nothing written." % (output, exc.strerror or exc))
    backup = edit.write_atomic(output, text, before)
    console.print("Wrote %s%s." % (output, " (previous version in %s)" % view.short_path(backup)
                                   if isinstance(backup, str) and os.path.exists(backup) else ""),
                  style="green", highlight=False, soft_wrap=True)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# imported last so that `memtui config --help` lists their commands after the ones above
from . import config_edit  # noqa: E402,F401 - registers set, unset, reset and apply
from . import config_push  # noqa: E402,F401 - registers push

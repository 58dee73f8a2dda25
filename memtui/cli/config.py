"""``memtui config``: show, get, set, unset, validate, diff, export, apply, reset, schema, explain,
envs and push environment profiles. All the work is in ``memtui.config``; this is the surface.

Exit codes: 0 ok; 1 a check failed (invalid profile, a missing key, environments differ, a value
refused); 2 usage or runtime error (a write that could not happen, no agent, no such environment,
a profile ``diff`` cannot read)."""
from __future__ import annotations

import enum
import json
import os
import sys
from typing import Any, Dict, List, Optional

import typer

from ..config import ConfigError, ProfileStore, WriteError
from ..config import diff as cdiff
from ..config import profiles as cprofiles
from ..config import schema
from . import config_view as view
from ._common import EXIT_CHECK, EXIT_ERROR, UsageFailure, console, json_default, print_json

config_app = typer.Typer(name="config", no_args_is_help=True,
                         help="Show, compare, edit, validate and push environment profiles.")

EnvOpt = typer.Option(None, "--env", "-e", metavar="ENV",
                      help="Environment (default: $MEMTUI_ENV, else dev).")
ProfilesOpt = typer.Option(None, "--profiles", "-p", metavar="DIR",
                           help="Profiles directory (default: $MEMTUI_PROFILES, else ./profiles).")
SetOpt = typer.Option(None, "--set", "-s", metavar="KEY=VALUE",
                      help="Override a value for this command only (strongest layer; repeatable).")
SecretsOpt = typer.Option(False, "--show-secrets", help="Print secret values instead of ********.")
DryRunOpt = typer.Option(False, "--dry-run", "-n", help="Show what would change; write nothing.")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")


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


class CheckFailed(Exception):
    """Lines for stderr, exit 1 (or *code*)."""

    def __init__(self, *lines: str, code: int = EXIT_CHECK) -> None:
        super().__init__("\n".join(lines))
        self.code = code


def _store(profiles: Optional[str]) -> ProfileStore:
    return ProfileStore(profiles)


def _env(store: ProfileStore, env: Optional[str]) -> str:
    """The environment's name (--env, $MEMTUI_ENV, dev); a name that cannot be one: exit 2."""
    try:
        return cprofiles.active_env(env, store.environ)
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None


def _need_profile(store: ProfileStore, name: str) -> None:
    """An environment with no profile file is a usage error (exit 2), named in one line."""
    if name in store.overlay or os.path.isfile(store.path(name)):
        return
    if not os.path.isdir(store.directory):
        raise UsageFailure("No profiles directory %s (pass --profiles DIR or set MEMTUI_PROFILES)"
                           % view.short_path(store.directory))
    raise UsageFailure("No profile %r in %s (profiles here: %s)" % (
        name, view.short_path(store.directory), ", ".join(store.names()) or "none"))


def _resolve(store: ProfileStore, env: Optional[str], overrides: Optional[List[str]]):
    name = _env(store, env)
    _need_profile(store, name)
    return store.resolve(name, overrides or ())


def _edit(store: ProfileStore, name: str, run: Any) -> Any:
    """Run an edit; a refused one prints its problems and then "Nothing written to FILE."."""
    try:
        return run()
    except WriteError:
        raise  # one line that says so itself; exit 2
    except ConfigError as exc:
        raise CheckFailed(*_short_sources(exc), "Nothing written to %s." % view.short_path(
            store.path(name))) from None


def _changes(result: Any, dry_run: bool) -> None:
    """What an edit changed (or would), then where it went."""
    path = view.short_path(result.path)
    for key, old, new in result.changes:
        before, after = _shown(key, old), _shown(key, new)
        line = ("%s: (secret changed)" % key if before == after and schema.MASK in before
                else "%s: %s → %s" % (key, before, after))
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if dry_run:
        text = view.masked_file_diff(result.before, result.after, path)
        if text:
            console.print(text.rstrip("\n"), highlight=False, markup=False, soft_wrap=True)
        console.print("Dry run: %s not written." % path, style="dim", highlight=False,
                      soft_wrap=True)
    elif result.written:
        backup = _backup(result)
        console.print("Wrote %s%s." % (path, " (previous version in %s)" % view.short_path(backup)
                                       if backup else ""), style="green", highlight=False,
                      soft_wrap=True)
    else:
        console.print("Nothing to change in %s." % path, style="dim", highlight=False,
                      soft_wrap=True)
    remaining = list(getattr(result, "remaining", ()) or ())
    if remaining:  # allowed: the edit did not cause them (a file can be repaired key by key)
        sys.stderr.write("\n".join(
            ["%s still has %d problem%s it had before:" % (path, len(remaining),
                                                          "s"[:len(remaining) != 1])]
            + [str(p._replace(source=view.short_path(p.source))) for p in remaining]) + "\n")


def _backup(result: Any) -> Optional[str]:
    """The .bak this write left: the edit's own word if it gives one, else the file next to the
    real target (symlinks followed) when it holds exactly the previous text."""
    if "backup" in getattr(result, "_fields", ()):  # edit.EditResult says which .bak it wrote
        named = result.backup
        return named if named and os.path.exists(named) else None
    candidate = os.path.realpath(result.path) + ".bak"
    try:
        with open(candidate, "rb") as fh:
            kept = fh.read()
    except OSError:
        return None
    return candidate if kept == result.before.encode("utf-8") else None


def _shown(key: str, value: Any) -> str:
    return cdiff.render_value(value if value is cdiff.MISSING else cprofiles.masked(key, value))


# -- reading --------------------------------------------------------------------------------------
@config_app.command()
def show(env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
         set_: Optional[List[str]] = SetOpt, json_: bool = JsonOpt,
         flat: bool = typer.Option(False, "--flat", help="KEY = VALUE lines, one per key."),
         only_set: bool = typer.Option(False, "--only-set", help="Leave out schema defaults."),
         show_secrets: bool = SecretsOpt) -> None:
    """Every value of an environment with its type and where it came from."""
    resolved = _resolve(_store(profiles), env, set_)
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
    resolved = _resolve(_store(profiles), env, set_)
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
    resolved = _resolve(_store(profiles), env, set_)
    console.print(view.explain(key, resolved, mask=not show_secrets))


@config_app.command()
def envs(profiles: Optional[str] = ProfilesOpt, json_: bool = JsonOpt) -> None:
    """The environments (and base files) in the profiles directory."""
    store = _store(profiles)
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
    store = _store(profiles)
    if file:
        problems, checked = cvalidate.check_file(file), [file]
    elif all_:
        if not store.names():
            raise UsageFailure("No profiles in %s" % view.short_path(store.directory))
        problems, checked = cvalidate.check_all(store), [store.path(n) for n in store.names()]
    else:
        name = _env(store, env)
        _need_profile(store, name)
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
    store = _store(profiles)
    names = list(names or store.envs())
    if len(names) < 2:
        raise UsageFailure("Need two environments to compare; found %s in %s" % (
            ", ".join(names) or "none", view.short_path(store.directory)))
    for name in names:
        _need_profile(store, _env(store, name))
    try:  # exit 1 means "they differ": a profile that cannot be read is exit 2
        resolved = [store.resolve(n) for n in names]
    except ConfigError as exc:
        raise CheckFailed(*_short_sources(exc), code=EXIT_ERROR) from None
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
    resolved = _resolve(_store(profiles), env, set_)
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


# -- writing --------------------------------------------------------------------------------------
@config_app.command("set")
def set_cmd(assignments: List[str] = typer.Argument(..., metavar="KEY=VALUE..."),
            env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
            dry_run: bool = DryRunOpt) -> None:
    """Write values into ENV.toml in place (comments kept), after validating the result."""
    from ..config import edit  # noqa: PLC0415

    store = _store(profiles)
    name = _env(store, env)
    _changes(_edit(store, name, lambda: edit.set_values(store, name, assignments,
                                                        dry_run=dry_run)), dry_run)


@config_app.command()
def unset(keys: List[str] = typer.Argument(..., metavar="KEY..."), env: Optional[str] = EnvOpt,
          profiles: Optional[str] = ProfilesOpt, dry_run: bool = DryRunOpt) -> None:
    """Remove keys from ENV.toml: the value then comes from the extended file or the default."""
    from ..config import edit  # noqa: PLC0415

    store = _store(profiles)
    name = _env(store, env)
    _changes(_edit(store, name, lambda: edit.unset_values(store, name, keys, dry_run=dry_run)),
             dry_run)


@config_app.command()
def reset(keys: Optional[List[str]] = typer.Argument(None, metavar="[KEY]..."),
          env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
          dry_run: bool = DryRunOpt) -> None:
    """Put keys (default: every key the environment sets) back to their schema defaults."""
    from ..config import edit  # noqa: PLC0415

    store = _store(profiles)
    name = _env(store, env)
    _changes(_edit(store, name, lambda: edit.reset(store, name, keys or (), dry_run=dry_run)),
             dry_run)


@config_app.command("apply")
def apply_cmd(file: str = typer.Argument(..., help="A profile to install as ENV.toml."),
              env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
              dry_run: bool = DryRunOpt) -> None:
    """Validate FILE, show what it changes, then replace ENV.toml with it."""
    from ..config import edit  # noqa: PLC0415

    store = _store(profiles)
    name = _env(store, env)
    _changes(_edit(store, name, lambda: edit.apply_file(store, name, file, dry_run=dry_run)),
             dry_run)


# -- live -----------------------------------------------------------------------------------------
LIVE_OPTIONS = ("env", "interval", "memory_limit", "warning_pct", "critical_pct", "hysteresis_pct")
# config.apply accepts these and answers "needs a restart" (memtui/agent/config_ops.py)
RESTART_OPTIONS = ("history", "trace", "trace_frames")


@config_app.command()
def push(pid: int = typer.Argument(..., min=1, help="PID of a process running the agent."),
         env: Optional[str] = typer.Option(None, "--env", "-e", metavar="ENV",
                                           help="Environment to push (default: the one the agent "
                                                "runs; $MEMTUI_ENV is not used)."),
         profiles: Optional[str] = ProfilesOpt,
         set_: Optional[List[str]] = SetOpt, dry_run: bool = DryRunOpt,
         force: bool = typer.Option(False, "--force", help="Push --env even though the agent "
                                                          "runs another environment."),
         socket: Optional[str] = typer.Option(None, "--socket", metavar="PATH"),
         json_: bool = JsonOpt) -> None:
    """Send the resolved profile to a running agent: components retune live.

    Keys the profile does not set keep the values the agent holds (a schema default never
    overrides what your code passed to a constructor); they are listed."""
    from ..client import AgentClient  # noqa: PLC0415
    from ..config import validate as cvalidate  # noqa: PLC0415

    store = _store(profiles)
    asked = _env(store, env) if env else None
    with AgentClient(pid=pid, path=socket).connect() as client:
        running, held = _agent_profile(client)
        if asked is None and running is None:
            raise UsageFailure("PID %d does not say which environment it runs; pass --env ENV"
                               % pid)
        if asked is not None and running is not None and asked != running and not force:
            raise UsageFailure("Not pushed: PID %d runs %r, not %r; pass --force to switch it "
                               "to %s" % (pid, running, asked, asked))
        resolved = _resolve(store, asked or running, set_)
        problems = cvalidate.check_env(store, resolved.env, set_ or ())
        if problems:
            raise CheckFailed(*(["Not pushed: %s is invalid." % resolved.env]
                                + [str(p._replace(source=view.short_path(p.source)))
                                   for p in problems]))
        options = {k: v for k, v in cprofiles.agent_options(resolved).items()
                   if k in LIVE_OPTIONS + RESTART_OPTIONS}
        settings = cprofiles.component_settings(resolved)
        not_set = sorted(set(cprofiles.flatten(held)) - set(cprofiles.flatten(settings)))
        next_start = ({"profiler.enabled": False}
                      if resolved.get("profiler.enabled", True) is False else {})
        if not json_:
            console.print("Pushing %s (%s) to PID %d, which runs %s%s." % (
                resolved.env, ", ".join(view.short_path(f) for f in resolved.files),
                pid, running or "an unnamed environment",
                " (--force)" if running and running != resolved.env else ""),
                style="dim", highlight=False, markup=False, soft_wrap=True)
        result = client.config_apply(settings, options=options, env=resolved.env,
                                     dry_run=dry_run)
    errors = dict(result.get("errors") or {})
    restart = {k: errors.pop(k) for k in list(errors)
               if k.startswith("option ") and "needs a restart" in str(errors[k])}
    result = dict(result, errors=errors, needs_restart=restart, not_set=not_set,
                  next_start=next_start, pushed_env=resolved.env, agent_env=running)
    if json_:
        print_json(result)
    else:
        _print_push(pid, resolved.env, result)
    if errors:
        raise typer.Exit(EXIT_CHECK)


def _agent_profile(client: Any) -> tuple:
    """(the environment the agent runs, the profile sections it holds)."""
    from ..protocol import RemoteError  # noqa: PLC0415

    try:
        current = client.config_get()
    except RemoteError as exc:
        if exc.code != "unknown_op":
            raise
        info = getattr(client, "info", None) or client.request("hello")
        return info.get("env"), {}
    held = current.get("settings")
    return current.get("env"), held if isinstance(held, dict) else {}


def _print_push(pid: int, env: str, result: Dict[str, Any]) -> None:
    dry = result.get("dry_run")
    verb = "would change" if dry else "changed"
    lines = 0

    def say(text: str, style: str = "") -> None:
        console.print(text, style=style, highlight=False, markup=False, soft_wrap=True)

    for option, (old, new) in sorted((result.get("options") or {}).items()):
        say("agent %s: %s → %s" % (option, old, new))
        lines += 1
    for name, (old, new) in sorted((result.get("tuner") or {}).items()):
        say("tuner %s: %s → %s" % (name, old, new))
        lines += 1
    for component, changed in sorted((result.get("changed") or {}).items()):
        for key, new in sorted(changed.items()):
            say("%s %s → %s" % (component, key, new))
            lines += 1
    for option, message in sorted((result.get("needs_restart") or {}).items()):
        say("agent %s: %s" % (option.split(" ", 1)[-1], message), "yellow")
    for key in sorted(result.get("next_start") or {}):
        say("%s = %s: applies at the next start (memtui.start() will start nothing in %s); this "
            "agent keeps running" % (key, cdiff.render_value(result["next_start"][key]), env),
            "yellow")
    for component, message in sorted((result.get("errors") or {}).items()):
        say("%s refused: %s" % (component, message), "red")
    if result.get("not_set"):
        say("Left as they are (the profile does not set them): %s."
            % ", ".join(result["not_set"]), "yellow")
    summary = ("%s %d setting%s in PID %d (%s)" % (verb, lines, "s"[:lines != 1], pid, env)
               if lines else "Nothing to change in PID %d (%s)" % (pid, env))
    say(summary[0].upper() + summary[1:] + ("; dry run, nothing applied." if dry else "."), "dim")


def handle(exc: BaseException) -> int:
    """Print a config failure; return its exit code (None: not ours)."""
    if isinstance(exc, CheckFailed):
        sys.stderr.write(str(exc) + "\n")
        return exc.code
    if isinstance(exc, WriteError):
        sys.stderr.write(str(exc) + "\n")
        return EXIT_ERROR
    if isinstance(exc, ConfigError):
        sys.stderr.write("\n".join(_short_sources(exc)) + "\n")
        return EXIT_CHECK
    return 0


def _short_sources(exc: ConfigError) -> List[str]:
    if not exc.problems:
        return [str(exc)]
    return [str(p._replace(source=view.short_path(p.source))) for p in exc.problems]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]

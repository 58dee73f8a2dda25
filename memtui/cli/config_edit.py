"""``memtui config set``, ``unset``, ``reset`` and ``apply``: run one ``memtui.config.edit`` and
print what it changed (or would), where it wrote and the problems the file still has."""
from __future__ import annotations

import os
import sys
from typing import Any, List, Optional

import typer

from ..config import ConfigError, ProfileStore, WriteError
from ..config import diff as cdiff
from ..config import profiles as cprofiles
from ..config import schema
from . import config_view as view
from ._common import console
from .config_common import (CheckFailed, DryRunOpt, EnvOpt, ProfilesOpt, config_app, env_name,
                            profile_store, short_sources)


def _edit(store: ProfileStore, name: str, run: Any) -> Any:
    """Run an edit; a refused one prints its problems and then "Nothing written to FILE."."""
    try:
        return run()
    except WriteError:
        raise  # one line that says so itself; exit 2
    except ConfigError as exc:
        raise CheckFailed(*short_sources(exc), "Nothing written to %s." % view.short_path(
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


# -- writing --------------------------------------------------------------------------------------
@config_app.command("set")
def set_cmd(assignments: List[str] = typer.Argument(..., metavar="KEY=VALUE..."),
            env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
            dry_run: bool = DryRunOpt) -> None:
    """Write values into ENV.toml in place (comments kept), after validating the result."""
    from ..config import edit  # noqa: PLC0415

    store = profile_store(profiles)
    name = env_name(store, env)
    _changes(_edit(store, name, lambda: edit.set_values(store, name, assignments,
                                                        dry_run=dry_run)), dry_run)


@config_app.command()
def unset(keys: List[str] = typer.Argument(..., metavar="KEY..."), env: Optional[str] = EnvOpt,
          profiles: Optional[str] = ProfilesOpt, dry_run: bool = DryRunOpt) -> None:
    """Remove keys from ENV.toml: the value then comes from the extended file or the default."""
    from ..config import edit  # noqa: PLC0415

    store = profile_store(profiles)
    name = env_name(store, env)
    _changes(_edit(store, name, lambda: edit.unset_values(store, name, keys, dry_run=dry_run)),
             dry_run)


@config_app.command()
def reset(keys: Optional[List[str]] = typer.Argument(None, metavar="[KEY]..."),
          env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
          dry_run: bool = DryRunOpt) -> None:
    """Put keys (default: every key the environment sets) back to their schema defaults."""
    from ..config import edit  # noqa: PLC0415

    store = profile_store(profiles)
    name = env_name(store, env)
    _changes(_edit(store, name, lambda: edit.reset(store, name, keys or (), dry_run=dry_run)),
             dry_run)


@config_app.command("apply")
def apply_cmd(file: str = typer.Argument(..., help="A profile to install as ENV.toml."),
              env: Optional[str] = EnvOpt, profiles: Optional[str] = ProfilesOpt,
              dry_run: bool = DryRunOpt) -> None:
    """Validate FILE, show what it changes, then replace ENV.toml with it."""
    from ..config import edit  # noqa: PLC0415

    store = profile_store(profiles)
    name = env_name(store, env)
    _changes(_edit(store, name, lambda: edit.apply_file(store, name, file, dry_run=dry_run)),
             dry_run)


"""What every ``memtui config`` command shares: the Typer group and its options, finding the
profiles and the environment, and a config failure turned into lines and an exit code."""
from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

from ..config import ConfigError, ProfileStore, WriteError
from ..config import profiles as cprofiles
from . import config_view as view
from ._common import EXIT_CHECK, EXIT_ERROR, UsageFailure

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


class CheckFailed(Exception):
    """Lines for stderr, exit 1 (or *code*)."""

    def __init__(self, *lines: str, code: int = EXIT_CHECK) -> None:
        super().__init__("\n".join(lines))
        self.code = code


def profile_store(profiles: Optional[str]) -> ProfileStore:
    return ProfileStore(profiles)


def env_name(store: ProfileStore, env: Optional[str]) -> str:
    """The environment's name (--env, $MEMTUI_ENV, dev); a name that cannot be one: exit 2."""
    try:
        return cprofiles.active_env(env, store.environ)
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None


def need_profile(store: ProfileStore, name: str) -> None:
    """An environment with no profile file is a usage error (exit 2), named in one line."""
    if name in store.overlay or os.path.isfile(store.path(name)):
        return
    if not os.path.isdir(store.directory):
        raise UsageFailure("No profiles directory %s (pass --profiles DIR or set MEMTUI_PROFILES)"
                           % view.short_path(store.directory))
    raise UsageFailure("No profile %r in %s (profiles here: %s)" % (
        name, view.short_path(store.directory), ", ".join(store.names()) or "none"))


def resolve_env(store: ProfileStore, env: Optional[str], overrides: Optional[List[str]]):
    name = env_name(store, env)
    need_profile(store, name)
    return store.resolve(name, overrides or ())


def handle(exc: BaseException) -> int:
    """Print a config failure; return its exit code (None: not ours)."""
    if isinstance(exc, CheckFailed):
        sys.stderr.write(str(exc) + "\n")
        return exc.code
    if isinstance(exc, WriteError):
        sys.stderr.write(str(exc) + "\n")
        return EXIT_ERROR
    if isinstance(exc, ConfigError):
        sys.stderr.write("\n".join(short_sources(exc)) + "\n")
        return EXIT_CHECK
    return 0


def short_sources(exc: ConfigError) -> List[str]:
    if not exc.problems:
        return [str(exc)]
    return [str(p._replace(source=view.short_path(p.source))) for p in exc.problems]


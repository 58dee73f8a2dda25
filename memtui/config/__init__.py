"""Environment profiles: schema, resolution with provenance, validation, safe edits and diffs.

``load()``, ``ProfileStore`` and the schema helpers are standard library only (the agent uses them);
validation (jsonschema) and writing (tomlkit) are imported only when used.
"""
from .errors import ConfigError, Problem, WriteError
from .profiles import Layer, ProfileStore, Resolved, active_env, load

__all__ = ["ConfigError", "Layer", "Problem", "ProfileStore", "Resolved", "WriteError",
           "active_env", "load"]

"""The in-process agent. Stdlib only (psutil used lazily off Linux); safe to import anywhere."""
from .core import AGENT_VERSION, Agent, disabled
from .lifecycle import (current, install, installed_signal, register, registry, start, stop,
                        unregister)
from .options import AgentOptions, parse_duration, parse_size
from .registry import Component, ComponentRegistry

__all__ = [
    "AGENT_VERSION", "Agent", "AgentOptions", "Component", "ComponentRegistry", "current",
    "disabled", "install", "installed_signal", "parse_duration", "parse_size", "register",
    "registry", "start", "stop", "unregister",
]

"""memtui: see and tune the memory of running Python services.

``memtui.start()`` runs the agent in this process; ``memtui.install()`` installs it dormant until
SIGUSR2. Importing memtui loads only the standard library.
"""
from .agent import AgentOptions, current, install, register, start, stop, unregister

__version__ = "0.1.0"
__all__ = ["AgentOptions", "current", "install", "register", "start", "stop", "unregister",
           "__version__"]

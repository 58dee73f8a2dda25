"""Placed first on PYTHONPATH by ``memtui run``: start the agent, then hand over to any
sitecustomize the target would have loaded without us."""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _memtui_boot():
    parent = os.environ.get("MEMTUI_PACKAGE_PARENT")
    try:
        if parent:
            import importlib.machinery

            class _Finder:
                def find_spec(self, name, path=None, target=None):
                    if name == "memtui" or name.startswith("memtui."):
                        return importlib.machinery.PathFinder.find_spec(name, path or [parent])
                    return None

            sys.meta_path.append(_Finder())
        from memtui.agent.bootstrap import autostart

        autostart()
    except Exception as exc:
        sys.stderr.write("memtui: agent not started: %s\n" % exc)


def _chain():
    import importlib.machinery
    import importlib.util

    rest = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_memtui_boot()
_chain()

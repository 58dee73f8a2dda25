"""Instrumented building blocks (caches, pools, workers, batches) and adapters. Stdlib only.

Every block reports itself to the agent through ``stats()`` (the shapes are in ``_stats.SHAPES``),
accepts live retuning through ``configure(values)`` and, where it holds memory, gives some back
through ``shrink(fraction) -> bytes_freed``.
"""

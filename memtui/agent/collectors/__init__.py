"""Collectors: small readers of one kind of figure each (process memory, Python heap)."""

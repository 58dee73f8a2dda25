"""The "no value" sentinel shared by the cache modules (kept apart so importing the hot tier never
imports the lower tiers' pickle, zlib and sqlite3)."""

MISSING = object()

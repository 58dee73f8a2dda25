"""Caches / Pools / Workers panes (placeholder while being written)."""
from .base import Pane


class CachesPane(Pane):
    PANE_ID = "caches"
    TITLE = "Caches"
    KEY = "3"


class PoolsPane(Pane):
    PANE_ID = "pools"
    TITLE = "Pools"
    KEY = "4"


class WorkersPane(Pane):
    PANE_ID = "workers"
    TITLE = "Workers"
    KEY = "5"

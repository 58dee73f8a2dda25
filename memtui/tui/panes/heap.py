"""Heap pane (placeholder while being written)."""
from .base import Pane


class HeapPane(Pane):
    PANE_ID = "heap"
    TITLE = "Heap"
    KEY = "2"

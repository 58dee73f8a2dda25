"""Profiles pane (placeholder while being written)."""
from .base import Pane


class ProfilesPane(Pane):
    PANE_ID = "profiles"
    TITLE = "Profiles"
    KEY = "7"

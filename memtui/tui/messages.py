"""Messages the feed thread posts to the app (data up; the app hands it down to the panes)."""
from __future__ import annotations

from textual.message import Message

from .model import Connection, Sample


class SampleReady(Message):
    """A poll finished; *sample* is immutable and may be kept."""

    def __init__(self, sample: Sample) -> None:
        super().__init__()
        self.sample = sample


class ConnectionChanged(Message):
    """The link to the agent went live, was lost, or is being retried."""

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self.connection = connection

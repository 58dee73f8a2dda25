"""Screens pushed over the dashboard: help, the process picker, detail views."""

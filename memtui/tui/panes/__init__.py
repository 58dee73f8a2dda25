"""The dashboard's panes, one per tab, in the order the tabs appear."""

"""Pure formatting of agent figures for the interim live view."""
from memtui.render import fmt_value


def test_nested_counts_show_only_what_happened():
    assert fmt_value("evictions", {"size": 137, "expired": 0, "explicit": 4}) == "(size 137 explicit 4)"
    assert fmt_value("evictions", {"size": 0, "expired": 0}) == "0"
    assert fmt_value("hit_rate", 0.5) == "50.0%"

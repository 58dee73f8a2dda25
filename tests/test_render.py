"""Pure formatting of agent figures for the interim live view."""
from memtui.render import fmt_value, short_command


def test_nested_counts_show_only_what_happened():
    assert fmt_value("evictions", {"size": 137, "expired": 0, "explicit": 4}) == "(size 137 explicit 4)"
    assert fmt_value("evictions", {"size": 0, "expired": 0}) == "0"
    assert fmt_value("hit_rate", 0.5) == "50.0%"


def test_health_line_and_open_alerts_lead_the_stats_view():
    from rich.console import Console

    from memtui.render import stats_view

    stats = {"health": {"score": 65, "reasons": []},
             "alerts": [{"severity": "critical", "message": "memory critical: RSS 1.9 GiB"},
                        {"severity": "warning", "message": "cache users hit rate 41%"}],
             "process": {}, "memory": {}, "heap": {}}
    console = Console(width=100, record=True)
    console.print(stats_view(stats))
    text = console.export_text().splitlines()
    assert text[0] == "health 65/100"
    assert text[1].strip() == "critical: memory critical: RSS 1.9 GiB"
    assert text[2].strip() == "warning: cache users hit rate 41%"
    console = Console(width=100, record=True)
    console.print(stats_view({"process": {}, "memory": {}, "heap": {}}))
    assert "health" not in console.export_text()


def test_a_command_is_shown_by_program_name_on_one_line():
    cmd = "/root/.pyenv/versions/3.11.7/bin/python3.11  /srv/app/worker.py\n--queue jobs"
    assert short_command(cmd) == "python3.11 /srv/app/worker.py --queue jobs"
    assert short_command(cmd, 20) == "python3.11 /srv/app…" and len(short_command(cmd, 20)) == 20
    assert short_command("gunicorn: worker [app]") == "gunicorn: worker [app]"  # no path
    assert short_command("./run.sh -x") == "run.sh -x"
    assert short_command("/") == "/" and short_command("") == "" and short_command(None) == ""

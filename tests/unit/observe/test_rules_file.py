"""Alert rules from a TOML file: change a default, disable one, add one; mistakes are clear."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from stalwart.errors import ConfigError
from stalwart.observe import Threshold, default_rules, load_rules

RULES = """
[[rule]]
name = "RestartStorm"
warning = { value = 2 }
critical = { value = 4, for_s = 30 }
window_s = 600

[[rule]]
name = "MemoryGrowth"
disabled = true

[[rule]]
name = "QueueBacklog"
kind = "max"
metric = "helpdesk_queue_depth"
by = ["queue"]
match = { region = "eu" }
summary = "Tickets waiting"
warning = { value = 100, for_s = 60 }
critical = { value = 500, for_s = 60 }
"""


def test_changes_disables_and_additions(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    rules = {r.name: r for r in load_rules(str(path))}
    assert "MemoryGrowth" not in rules
    storm = rules["RestartStorm"]
    assert (storm.warning, storm.critical, storm.window_s) == (
        Threshold(2, 0), Threshold(4, 30), 600
    )  # fmt: skip
    assert storm.by == ("agent",)  # what the file does not say stays the default's
    backlog = rules["QueueBacklog"]
    assert backlog.by == ("queue",) and backlog.match == (("region", "eu"),)
    assert len(rules) == len(default_rules())  # one dropped, one added


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ('[[rule]]\nname = "RestartStorm"\nwarnig = { value = 1 }\n', "unknown keys"),
        ('[[rule]]\nname = "RestartStorm"\nwarning = 3\n', "warning must be"),
        ('[[rule]]\nname = "New"\nkind = "max"\n', "New"),
        ('[[rule]]\nname = "New"\nkind = "avg"\nmetric = "m"\nsummary = "s"\n'
         'warning = { value = 1 }\ncritical = { value = 2 }\n', "kind 'avg'"),
        ("[[rule]]\nkind = 'max'\n", "needs a name"),
        ("not toml [", "rules file"),
    ],
)  # fmt: skip
def test_mistakes_name_the_rule_and_key(tmp_path, text, word):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=word):
        load_rules(str(path))


def test_cli_exports_the_changed_rules(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    out = tmp_path / "prom.yml"
    proc = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "alerts", "--rules", str(path), "export",
         "-o", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "alert: QueueBacklog" in text and "alert: MemoryGrowth" not in text
    assert 'max by (queue) (helpdesk_queue_depth{region=\\"eu\\"}) >= 100' in text
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "rules", str(out)],
                               capture_output=True, timeout=30, check=False)  # fmt: skip
        assert check.returncode == 0, check.stdout

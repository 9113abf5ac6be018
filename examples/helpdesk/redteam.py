"""The helpdesk red-team run lives in the package: ``stalwart.demo.redteam`` (read it there)."""

from stalwart.demo.redteam import UNGUARDED, Case, RedTeam, run_redteam

__all__ = ["UNGUARDED", "Case", "RedTeam", "run_redteam"]

"""``stalwart verify``: the production-readiness checklist as executable verifications.

Each checklist item (PA-1 … LC-4) is verified by doing to a live node what the
checklist says — crash an agent under load, kill mid-task and compare, block a
dependency, hang it, disable the primary model, disable each tool — and
measuring what happens. See ``docs/verify.md``.
"""

from stalwart.verify._model import ITEMS, Item, ItemResult
from stalwart.verify._run import PreflightFailed, run_verify

__all__ = ["ITEMS", "Item", "ItemResult", "PreflightFailed", "run_verify"]

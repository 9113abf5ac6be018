"""Apps with one mechanism switched off, to show the matching item fails."""

from __future__ import annotations

import dataclasses

from examples.helpdesk.app import app as helpdesk

# no fallback chain: the primary alone
no_fallback = dataclasses.replace(helpdesk, models={"main": ["sim:strong"]})

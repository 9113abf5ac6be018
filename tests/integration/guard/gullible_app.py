"""The helpdesk app with a model that obeys every injected instruction."""

from __future__ import annotations

import dataclasses

from examples.helpdesk.app import app as helpdesk

app = dataclasses.replace(helpdesk, models={"main": ["sim:gullible"]})

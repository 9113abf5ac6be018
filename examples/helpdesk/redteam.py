"""The helpdesk's ``redteam`` lives in the package, ``stalwart.demo.redteam`` (read it there), so that
``stalwart verify``, ``stalwart chaos`` and ``stalwart sim`` work from an installed wheel.
This module names the same objects for the tests, benches and docs that say
``examples.helpdesk.redteam`` (it holds no copy)."""

from stalwart.demo.redteam import *  # noqa: F403

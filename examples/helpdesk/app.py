"""The helpdesk's ``app`` lives in the package, ``stalwart.demo.app`` (read it there), so that
``stalwart verify``, ``stalwart chaos`` and ``stalwart sim`` work from an installed wheel.
This module names the same objects for the tests, benches and docs that say
``examples.helpdesk.app`` (it holds no copy)."""

from stalwart.demo.app import *  # noqa: F403

"""The helpdesk's ``tickets`` lives in the package, ``stalwart.demo.tickets`` (read it there), so that
``stalwart verify``, ``stalwart chaos`` and ``stalwart sim`` work from an installed wheel.
This module names the same objects for the tests, benches and docs that say
``examples.helpdesk.tickets`` (it holds no copy)."""

from stalwart.demo.tickets import *  # noqa: F403

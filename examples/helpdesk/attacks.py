"""The helpdesk's ``attacks`` lives in the package, ``stalwart.demo.attacks`` (read it there), so that
``stalwart verify``, ``stalwart chaos`` and ``stalwart sim`` work from an installed wheel.
This module names the same objects for the tests, benches and docs that say
``examples.helpdesk.attacks`` (it holds no copy)."""

from stalwart.demo.attacks import *  # noqa: F403

"""The helpdesk's ``multistep`` lives in the package, ``stalwart.demo.multistep`` (read it there), so that
``stalwart verify``, ``stalwart chaos`` and ``stalwart sim`` work from an installed wheel.
This module names the same objects for the tests, benches and docs that say
``examples.helpdesk.multistep`` (it holds no copy)."""

from stalwart.demo.multistep import *  # noqa: F403

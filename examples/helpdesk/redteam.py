"""The helpdesk's ``redteam`` lives in the package, ``stalwart.demo.redteam`` (read it there), so that
``stalwart verify``, ``stalwart chaos`` and ``stalwart sim`` work from an installed wheel.
``examples.helpdesk.redteam`` is that same module (it holds no copy): importing this name
gives the package's module object, every name in it included."""

import sys

from stalwart.demo import redteam as _module

sys.modules[__name__] = _module

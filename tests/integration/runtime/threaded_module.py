"""A module that starts a thread when imported: what an app module preloaded into the fork
server must not do (the server would fork with two threads)."""

from __future__ import annotations

import threading

_never = threading.Event()
threading.Thread(target=_never.wait, name="started-at-import", daemon=True).start()

"""stalwart.agent._warm: what an app node's fork server imports before it forks agents."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import stalwart.agent._warm\n"
    "from stalwart.durable import default_counter\n"
    "from stalwart.guard import _gazetteer, _ner, _shapes\n"
    "import os\n"
    "setting = os.environ.get('STALWART_NER_MODEL', '').strip()\n"
    "print(setting in _ner._CACHE, _ner._CACHE.get(setting) is not None,"
    " default_counter.cache_info().currsize, len(_gazetteer._LOADED), len(_shapes._ENGLISH))\n"
)


def probe(**env: str) -> list[str]:
    """Import the module in a fresh interpreter; what it left loaded there."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.split()


def test_importing_it_loads_the_output_model_and_the_token_counter() -> None:
    from stalwart.guard._ner import ner_model

    tried, loaded, counters, lists, dictionary = probe(STALWART_REDACT_OUTPUTS="accurate")
    assert tried == "True"  # the model was looked for, so agents forked after never load it
    assert loaded == str(ner_model() is not None)
    assert counters == "1"
    # the fast tier's lists and dictionary too: else each agent loads them (~0.25 s of CPU)
    # at its first log line, on its event loop
    assert (lists, dictionary) == ("1", "1")


def test_a_model_that_cannot_load_does_not_stop_the_import() -> None:
    """The fork server must start; the agent reports the bad setting where it redacts."""
    _, loaded, counters, lists, _ = probe(
        STALWART_NER_MODEL="no_such_spacy_pipeline", STALWART_REDACT_OUTPUTS="accurate"
    )
    assert (loaded, counters, lists) == ("False", "1", "1")

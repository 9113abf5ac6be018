"""Every ```python block in docs/*.md and the README runs, so the examples users copy stay true.

A page's blocks run in order in one fresh interpreter (a later block may use names
from an earlier one). A block whose first line is ``# doc: no-run`` is shown only.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _pages() -> list[pathlib.Path]:
    pages = [*DOCS.rglob("*.md"), DOCS.parent / "README.md"]
    return sorted(p for p in pages if BLOCK.search(p.read_text()))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_doc_examples_run(page: pathlib.Path, tmp_path: pathlib.Path) -> None:
    blocks = [b for b in BLOCK.findall(page.read_text()) if not b.startswith("# doc: no-run")]
    script = tmp_path / f"{page.stem}_examples.py"
    script.write_text("\n\n".join(blocks))
    root = str(DOCS.parent)  # examples run as from the repository root (examples/ importable)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, f"{page.name} examples failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.timeout(120)
def test_the_docs_site_builds_with_no_warning(tmp_path: pathlib.Path) -> None:
    """`make docs`: mkdocs --strict turns a broken link, a missing anchor or a page left out
    of the nav into a failure."""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=DOCS.parent,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()

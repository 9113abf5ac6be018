"""The version is written once, in ``stalwart.__version__`` (the package metadata reads it:
tests/unit/test_exports.py). The places that must name it as an image tag (the
manifests, the Dockerfile's and the docs' build commands) are checked against it here;
the Helm chart's appVersion in tests/unit/deploy/test_helm_chart.py."""

from __future__ import annotations

import pathlib
import re

import stalwart

ROOT = pathlib.Path(__file__).resolve().parents[2]
TAG = re.compile(r"\bstalwart:(\d+\.\d+\.\d+\S*)")


def test_every_image_tag_is_the_version():
    places = [
        ROOT / "Dockerfile",
        ROOT / "README.md",
        *(ROOT / "deploy").rglob("*.yaml"),
        *(ROOT / "docs").rglob("*.md"),
        *(ROOT / "src").rglob("*.yaml"),
    ]
    tags = {
        f"{path.relative_to(ROOT)}: {tag}"
        for path in places
        for tag in TAG.findall(path.read_text())
        if tag != stalwart.__version__
    }
    assert not tags, f"image tags that are not stalwart {stalwart.__version__}: {sorted(tags)}"
    found = sum(len(TAG.findall(p.read_text())) for p in places)
    assert found >= 8  # the manifests, the Dockerfile, the docs: the check sees them

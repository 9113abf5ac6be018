"""Scanning config and code for secret values (SE-1): values belong in the vault.

Walks files likely to hold configuration or code and reports every credential
the redactor recognizes (cloud keys, tokens, JWTs, private keys, high-entropy
``key = value`` assignments) by file, line and kind — never the value itself.
``secret://`` references are what should be there instead, and are not findings.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path

from stalwart.guard._redact import Redactor
from stalwart.guard._vendors import CREDENTIAL_KINDS as VENDOR_KINDS

__all__ = ["SecretFinding", "scan_for_secrets", "secrets_posture"]

CREDENTIAL_KINDS = frozenset(
    {*VENDOR_KINDS, "assignment", "bearer_token", "url_password"}
)  # every vendor token format and private key, and the generic forms
SUFFIXES = frozenset(
    {".py", ".toml", ".yaml", ".yml", ".json", ".env", ".ini", ".cfg", ".conf", ".sh", ".txt"}
)
SKIP_DIRS = frozenset(
    {".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
)


_PLACEHOLDER = re.compile(
    r"(?i)^(?:[{<$*%]|(?:pass|password|passwd|pwd|secret|changeme|change-me|x+|\.+)$)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class SecretFinding:
    """A credential in a file: where and what kind (never the value)."""

    path: str
    line: int
    kind: str


def _files(paths: Iterable[str | os.PathLike[str]]) -> Iterable[Path]:
    for root in map(Path, paths):
        if root.is_file():
            yield root
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
            for name in filenames:
                path = Path(dirpath, name)
                if path.suffix in SUFFIXES or name.startswith(".env"):
                    yield path


def scan_for_secrets(
    paths: Iterable[str | os.PathLike[str]], *, max_bytes: int = 1_000_000
) -> list[SecretFinding]:
    """Credentials written in plain text under ``paths`` (files or directories)."""
    redactor = Redactor(kinds=CREDENTIAL_KINDS)
    findings: list[SecretFinding] = []
    for path in _files(paths):
        try:
            if path.stat().st_size > max_bytes:
                continue
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for found in redactor.findings(line):
                if _PLACEHOLDER.match(line[found.start : found.end]):
                    continue  # "user:pass@host" in a docstring, "{password}" in a template
                findings.append(SecretFinding(str(path), number, found.kind))
    return findings


def secrets_posture(provider: object, paths: Iterable[str | os.PathLike[str]]) -> dict[str, object]:
    """SE-1's verdict: ``fail`` if code or config holds a credential, ``partial`` if the
    secrets come from environment variables (development only), else ``pass``."""
    findings = scan_for_secrets(paths)
    kind = str(getattr(provider, "kind", type(provider).__name__))
    if findings:
        status, why = "fail", f"{len(findings)} plaintext credential(s) in code or config"
    elif kind == "env":
        status, why = "partial", "secrets come from environment variables (development only)"
    else:
        status, why = "pass", f"secrets resolved at call time from the {kind} provider"
    return {
        "status": status,
        "why": why,
        "provider": kind,
        "findings": [dataclasses.asdict(f) for f in findings],
    }

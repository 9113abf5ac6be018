"""SE-1's scanner: plaintext credentials in config and code are found; the repo has none."""

from __future__ import annotations

import pathlib

from stalwart.guard import scan_for_secrets

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_planted_secrets_are_found_without_their_values(tmp_path) -> None:
    (tmp_path / "app.toml").write_text(
        '[provider]\napi_key = "Zk3Lm9Qp2Rs8Tv4Wx7"\nother = "secret://model-key"\n'
    )
    (tmp_path / "conf.py").write_text("AWS = 'AKIAIOSFODNN7EXAMPLE'\nTIMEOUT = 30\n")
    found = scan_for_secrets([tmp_path])
    assert sorted((pathlib.Path(f.path).name, f.line, f.kind) for f in found) == [
        ("app.toml", 2, "secret"),
        ("conf.py", 1, "aws_key"),
    ]
    assert "Zk3Lm9" not in repr(found)


def test_the_shipped_code_and_config_hold_no_secret_values() -> None:
    paths = [ROOT / "src", ROOT / "examples", ROOT / "pyproject.toml"]
    assert scan_for_secrets(paths) == []


def test_secrets_posture_for_se1(tmp_path) -> None:
    from stalwart.guard import EnvProvider, LocalVault, secrets_posture

    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "app.toml").write_text('api_key = "secret://model-key"\n')
    vault = LocalVault(tmp_path / "v.enc")
    assert secrets_posture(vault, [clean])["status"] == "pass"
    assert secrets_posture(EnvProvider({}), [clean])["status"] == "partial"
    (clean / "leak.py").write_text("KEY = 'AKIAIOSFODNN7EXAMPLE'\n")
    verdict = secrets_posture(vault, [clean])
    assert verdict["status"] == "fail" and verdict["findings"][0]["kind"] == "aws_key"

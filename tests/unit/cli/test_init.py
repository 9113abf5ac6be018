"""`stalwart init NAME`: the project it writes from package data, and what it refuses."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from stalwart.cli import main
from stalwart.cli._init import init_project
from stalwart.errors import ConfigError

FILES = {
    "app.py", "app.toml", "README.md", "Dockerfile", ".gitignore", ".dockerignore",
    "tests/conftest.py", "tests/test_app.py", "deploy/deployment.yaml", "deploy/values.yaml",
    "wheels/README.md",
}  # fmt: skip


def test_it_writes_the_project_with_every_placeholder_filled(tmp_path):
    target = tmp_path / "Shop_Bot"
    written = init_project(target)
    assert {str(p) for p in written} == FILES
    on_disk = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert on_disk == FILES
    for name in FILES:
        text = (target / name).read_text()
        assert not re.search(r"\{\{\s*\w+\s*\}\}", text), name
    assert 'store="sqlite:///shop-bot.db"' in (target / "app.py").read_text()
    deployment = yaml.safe_load((target / "deploy/deployment.yaml").read_text())
    assert deployment["metadata"]["name"] == "shop-bot"  # a Kubernetes name
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    values = yaml.safe_load((target / "deploy/values.yaml").read_text())
    assert values["image"]["repository"] == "shop-bot" and values["app"] == "app:app"
    dockerfile = (target / "Dockerfile").read_text()
    assert "USER app" in dockerfile and "HEALTHCHECK" in dockerfile
    for name in ("app.py", "tests/test_app.py", "tests/conftest.py"):
        compile((target / name).read_text(), name, "exec")  # valid Python as written


def test_the_python_and_toml_apps_load_and_agree(tmp_path):
    init_project(tmp_path / "shop")
    check = (
        "from stalwart.agent import load_app\n"
        "py, toml = load_app('app:app'), load_app('app.toml')\n"
        "assert [a.name for a in py.agents] == [a.name for a in toml.agents] == ['assistant']\n"
        "assert py.agents[0].tools == toml.agents[0].tools\n"
        "assert py.verify == toml.verify and py.verify.tools == {'lookup_order': 'sim:orders'}\n"
        "assert py.agents[0].security.budget.limited and toml.agents[0].security.budget.limited\n"
        "assert py.sim and toml.sim and py.scenario is toml.scenario\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shop")}
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path / "shop", env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_an_empty_folder_is_used_and_a_non_empty_one_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert init_project(empty)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists and is not an empty folder"):
        init_project(busy)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]  # nothing written
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        init_project(a_file)


@pytest.mark.parametrize("name", ["1app", "my app", "app!", "-x", "a" * 64])
def test_an_unusable_name_is_refused_saying_why(tmp_path, name):
    with pytest.raises(ConfigError, match="not a usable project name"):
        init_project(tmp_path / name)
    assert not (tmp_path / name).exists()


def test_the_command_exits_2_on_refusal_and_prints_next_steps(tmp_path, capsys):
    target = str(tmp_path / "demoapp")
    assert main(["init", target]) == 0
    out = capsys.readouterr().out
    assert "wrote 11 files" in out and "stalwart run app:app" in out
    assert main(["init", target]) == 2
    assert "already exists" in capsys.readouterr().err


def test_help_describes_the_tool_not_the_package(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "runs AI agents in production" in out and "stalwart init myapp" in out
    assert "__all__" not in out


def test_the_generated_and_the_demo_deployments_pass_the_kubernetes_schema(tmp_path):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    from stalwart.demo.app import MANIFEST

    init_project(tmp_path / "shop")
    for path in (tmp_path / "shop" / "deploy" / "deployment.yaml", MANIFEST):
        kubernetes_validate.validate(yaml.safe_load(path.read_text()), "1.30.0", strict=True)


def test_the_generated_python_is_lint_clean_and_formatted(tmp_path):
    """What a user starts from passes ruff as they would run it (stalwart is third-party
    there), so their own lint starts clean."""
    init_project(tmp_path / "shop")
    rules = ["--select", "E,F,W,I,B,UP,SIM,RUF", "--line-length", "100", "--no-cache"]
    for command in (["check", *rules], ["format", "--check", "--line-length", "100"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, str(tmp_path / "shop")],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr

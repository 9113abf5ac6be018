"""The Dockerfiles (stalwart's at the repository root, and the one `stalwart init` writes):
their structure always, and, where a Docker daemon answers, a build and a start."""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import subprocess
import time
import urllib.request

import pytest

from stalwart.cli._init import init_project

ROOT = pathlib.Path(__file__).resolve().parents[3]


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "a line continues past the end"
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for word, rest in instructions(text):
        if word == "FROM":
            found.append([])
        assert found, f"{word} before any FROM"
        found[-1].append((word, rest))
    return found


def check_structure(text: str) -> None:
    """Multi-stage, the final stage non-root with a health check on /livez, stalwart as the
    entry point (so Kubernetes `args` are stalwart's), the HTTP port exposed."""
    all_stages = stages(text)
    assert len(all_stages) >= 2, "not multi-stage"
    build_names = {
        rest.split()[-1]
        for stage in all_stages[:-1]
        for w, rest in stage
        if w == "FROM" and " AS " in rest.upper()
    }
    final = all_stages[-1]
    words = [w for w, _ in final]
    copies_from = [r for w, r in final if w == "COPY" and r.startswith("--from=")]
    assert copies_from and copies_from[0].split()[0].removeprefix("--from=") in build_names
    users = [r for w, r in final if w == "USER"]
    assert users, "the final stage runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # nothing after USER switches back, and the image runs as that user
    assert words.index("USER") < words.index("ENTRYPOINT")
    health = [r for w, r in final if w == "HEALTHCHECK"]
    assert len(health) == 1, "no HEALTHCHECK"
    assert "/livez" in health[0] and "--timeout=" in health[0]
    assert "8470" in [r for w, r in final if w == "EXPOSE"]
    entry = [r for w, r in final if w == "ENTRYPOINT"]
    assert len(entry) == 1 and json.loads(entry[0]) == ["stalwart"]
    cmd = [r for w, r in final if w == "CMD"]
    assert len(cmd) == 1
    args = json.loads(cmd[0])
    assert args[0] == "run" and args[args.index("--http-host") + 1] == "0.0.0.0"
    assert any(
        r.startswith("STALWART_VAULT=") or " STALWART_VAULT=" in r for w, r in final if w == "ENV"
    )  # the vault on a writable path


def test_the_repository_dockerfile_is_multistage_nonroot_with_a_healthcheck():
    check_structure((ROOT / "Dockerfile").read_text())


def test_the_init_projects_dockerfile_is_too(tmp_path):
    init_project(tmp_path / "shop")
    check_structure((tmp_path / "shop" / "Dockerfile").read_text())


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda t: t.replace("USER 10001:10001\n", ""), "root"),
        (
            lambda t: t.replace("HEALTHCHECK", "# HEALTHCHECK").replace('  CMD ["python"', "# "),
            "health",
        ),
        (lambda t: t.replace("COPY --from=build ", "COPY --from=builder "), "stage"),
    ],
    ids=["no-user", "no-healthcheck", "copy-from-unknown-stage"],
)
def test_the_structure_check_catches_a_broken_dockerfile(edit, why):
    with pytest.raises(AssertionError):
        check_structure(edit((ROOT / "Dockerfile").read_text()))


def docker_unavailable() -> str | None:
    """Why the image cannot be built and started here, or None when a daemon answers."""
    need = "building and starting the image needs a Docker daemon: "
    if shutil.which("docker") is None:
        return need + "no docker client on PATH"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return need + "`docker info` did not answer within 30 s"
    if info.returncode != 0 or not info.stdout.strip():
        last = " ".join(info.stderr.strip().splitlines()[-1:]) or f"exit {info.returncode}"
        return need + "none answers (`docker info`: " + last + ")"
    return None


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_image_builds_starts_and_turns_healthy():
    reason = docker_unavailable()
    if reason:
        pytest.skip(reason)
    tag = f"stalwart-test:{os.getpid()}"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=900)
    name = f"stalwart-test-{os.getpid()}"
    token = secrets.token_hex(16)
    try:
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "-p",
                "127.0.0.1::8470",
                "-e",
                f"STALWART_API_TOKEN={token}",
                tag,
            ],
            check=True,
            timeout=60,
            capture_output=True,
        )
        deadline = time.monotonic() + 120
        status = ""
        while time.monotonic() < deadline:  # Docker's own health check decides
            status = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.strip()
            if status in ("healthy", "unhealthy"):
                break
            time.sleep(1)  # polling Docker's health state; the deadline above bounds it
        assert status == "healthy", subprocess.run(
            ["docker", "logs", name], capture_output=True, text=True, check=False
        ).stderr[-3000:]
        port = (
            subprocess.run(
                ["docker", "port", name, "8470"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            .stdout.split(":")[-1]
            .strip()
        )
        user = subprocess.run(
            ["docker", "exec", name, "id", "-u"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        assert user == "10001"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/agents", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60, check=False)

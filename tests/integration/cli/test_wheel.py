"""The wheel works on its own: built from the repository (sdist, then the wheel from the
sdist, as ``make dist`` does), installed into a fresh virtual environment outside the
repository, and used from empty folders there: ``stalwart init demoapp``, the generated
tests, ``stalwart run`` with one task submitted and answered, ``stalwart verify --plan``,
and the commands whose defaults once pointed into ``examples/``.

Offline: the build uses the backend installed in the repository's environment (no build
isolation); the new environment gets the wheel with ``--no-deps`` and reaches the
dependencies through a ``.pth`` line naming the repository environment's site-packages
(a path added that way has its own ``.pth`` files ignored, so the editable install of
the checkout stays out, and the wheel's copy is the one imported: asserted below).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import sysconfig
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
QUESTION = '{"text": "Where is my order #1042?"}'


def _run(args: list[str], cwd: pathlib.Path, env: dict[str, str], timeout: float = 120):
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return done.returncode, done.stdout, done.stderr


def stalwart_version(bin_dir: pathlib.Path, env: dict[str, str], cwd: pathlib.Path) -> str:
    """The version the installed wheel's metadata says (stalwart.__version__ at build)."""
    code, out, err = _run(
        [str(bin_dir / "python"), "-c",
         "import importlib.metadata as m; print(m.version('stalwart'))"], cwd, env,
    )  # fmt: skip
    assert code == 0, err
    return out.strip()


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """(venv bin folder, environment, the built wheel) — nothing of the checkout on the path."""
    root = tmp_path_factory.mktemp("wheel")
    assert REPO not in root.parents  # outside the repository
    dist = root / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)],
        capture_output=True, text=True, timeout=170, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("stalwart-*.whl")
    assert len(list(dist.glob("stalwart-*.tar.gz"))) == 1
    venv = root / "venv"
    made = subprocess.run(
        [sys._base_executable, "-m", "venv", "--without-pip", str(venv)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    # the dependencies, from the repository's environment (after the venv's own packages)
    (pathlib.Path(purelib) / "repo_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(root / "home"),  # the local vault and any dot files land here
        "LANG": "C.UTF-8",
        "STALWART_CHROMIUM": os.environ.get("STALWART_CHROMIUM", ""),
    }
    (root / "home").mkdir()
    return venv / "bin", env, wheel


def test_the_wheel_holds_what_the_cli_needs_and_nothing_of_the_checkout(wheel_env):
    _, _, wheel = wheel_env
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "stalwart/demo/app.py",  # verify/chaos/sim's default app
        "stalwart/demo/deployment.yaml",  # its manifest (MA-1)
        "stalwart/demo/run.py",  # stalwart demo --helpdesk (make demo)
        "stalwart/cli/templates/project/app.py.tmpl",  # stalwart init
        "stalwart/cli/templates/project/tests/test_app.py.tmpl",
        "stalwart/durable/data/cl100k_base.tiktoken.gz",  # history bounding
        "stalwart/server/static/index.html",  # the dashboard
        "stalwart/py.typed",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("examples/", "tests/", "bench/"))]
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA")))
    assert b"Provides-Extra: verify" in metadata


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_init_then_tests_run_and_verify_plan_from_the_installed_wheel(wheel_env, tmp_path):
    bin_dir, env, _ = wheel_env
    stalwart, python = str(bin_dir / "stalwart"), str(bin_dir / "python")
    work = tmp_path / "work"
    work.mkdir()

    code, out, err = _run([python, "-c", "import stalwart; print(stalwart.__file__)"], work, env)
    assert code == 0 and out.startswith(str(bin_dir.parent)), (out, err)  # the wheel's copy

    code, out, err = _run([stalwart, "init", "demoapp"], work, env)
    assert code == 0, out + err
    project = work / "demoapp"
    for name in ("app.py", "app.toml", "tests/test_app.py", "Dockerfile", "deploy/values.yaml",
                 "deploy/deployment.yaml"):  # fmt: skip
        assert (project / name).is_file(), name
    code, out, err = _run([stalwart, "init", "demoapp"], work, env)
    assert code == 2 and "already exists" in err, out + err

    # the generated tests pass as generated
    code, out, err = _run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], project, env, 240
    )
    assert code == 0, out[-3000:] + err[-3000:]
    assert "3 passed" in out, out[-2000:]

    # stalwart run: one task submitted through the CLI, answered through the tool
    node = subprocess.Popen(
        [stalwart, "run", "app:app", "--http-port", "0"],
        cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        code, out, err = _run(
            [stalwart, "task", "submit", "assistant", QUESTION, "--app", "app:app", "--wait", "90"],
            project, env, 120,
        )  # fmt: skip
        assert code == 0, out + err
        record = json.loads(out)
        assert record["status"] == "succeeded", record
        assert record["outcome"]["answer"].startswith("Order #1042:"), record
        assert record["outcome"]["usage"]["tool_calls"] == 1, record
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=10)
        node.stderr.close()
    assert node.returncode == 0, node.returncode

    # stalwart verify --plan, for the Python app and its TOML twin: every precondition met
    for ref in ("app:app", "app.toml"):
        code, out, err = _run([stalwart, "verify", ref, "--plan"], project, env)
        assert code == 0, out + err
        assert "tool lookup_order: sim:orders" in out
        assert "precondition unmet" not in out, out


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_defaults_need_no_checkout(wheel_env, tmp_path):
    """From empty folders: the help, verify's and sim's default app, the demo, and a short
    load run on the default app."""
    bin_dir, env, _ = wheel_env
    stalwart = str(bin_dir / "stalwart")

    code, out, _ = _run([stalwart, "--help"], tmp_path, env)
    assert code == 0 and "stalwart init" in out and "production" in out
    assert "__all__" not in out  # not the package docstring

    # the commands that need no node or store, from the empty folder
    for argv, words in (
        (["version"], stalwart_version(bin_dir, env, tmp_path)),
        (["alerts", "list"], "RestartStorm"),
        (["alerts", "export"], "alert: RestartStorm"),
        (["models", "price", "openai:gpt-4o"], "openai:gpt-4o"),
        (["secrets", "list"], "(none)"),
    ):
        code, out, err = _run([stalwart, *argv], tmp_path, env)
        assert code == 0 and words in out, (argv, out, err)
    code, out, err = _run([stalwart, "logs"], tmp_path, env)  # no log store here: says so
    assert code == 2 and "no log store at 'stalwart-logs.db'" in err, out + err
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())  # nothing written

    code, out, err = _run([stalwart, "verify", "--plan"], tmp_path, env)
    assert code == 0, out + err
    assert "stalwart verify --plan for stalwart.demo.app:app" in out
    assert "precondition unmet" not in out, out

    # a real (short) verify run on the default app: its manifest ships in the wheel
    code, out, err = _run(
        [stalwart, "verify", "--only", "PA-1,MA-1", "--out", "report"], tmp_path, env, 150
    )
    assert code == 0, out[-2000:] + err[-2000:]
    report = json.loads((tmp_path / "report" / "readiness.json").read_text())
    assert {i["id"]: i["status"] for i in report["items"]} == {"PA-1": "complete",
                                                               "MA-1": "complete"}  # fmt: skip
    manifest = next(i for i in report["items"] if i["id"] == "MA-1")["evidence"]["manifest"]
    assert manifest.startswith(str(bin_dir.parent)), manifest  # the wheel's copy

    sim = subprocess.Popen(
        [stalwart, "sim", "--port", "0", "--scenario", "stalwart.demo.app:SCENARIO"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        line = sim.stdout.readline()  # printed once it listens; EOF if it failed
        assert line.startswith("stalwart sim: models at http://127.0.0.1:"), (
            line + sim.stderr.read() if sim.poll() is not None else line
        )
    finally:
        os.killpg(sim.pid, signal.SIGTERM)
        sim.wait(timeout=30)
        sim.stdout.close()
        sim.stderr.close()

    demo = tmp_path / "demo"
    demo.mkdir()
    code, out, err = _run(
        [stalwart, "demo", "--agents", "2", "--duration", "6", "--kill-at", "1.5"], demo, env
    )
    assert code == 0, out[-2000:] + err[-2000:]
    text = " ".join(out.split())
    assert "PASS: crash isolated and recovered." in text
    assert "stalwart init myapp" in text and "make test" not in text
    assert list(demo.iterdir()) == []  # the demo left nothing behind

    # the load levels on the default app and inputs (the helpdesk and its tickets)
    load = tmp_path / "load"
    load.mkdir()
    code, out, err = _run(
        [stalwart, "load", "--duration", "1s", "--rate", "3", "--drain", "60s"], load, env, 150
    )
    assert code == 0, out[-2000:] + err[-2000:]
    assert out.rstrip().endswith("PASSED"), out[-2000:]

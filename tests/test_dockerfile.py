# ruff: noqa: S104 - the image listens on every interface; these tests check that it does
"""The Dockerfile, built and run as Docker would, without a Docker engine (none runs here).

The build context is what the Dockerfile COPYs (less .dockerignore), the install is its
`pip install .` (built as a wheel), and the container is its CMD and HEALTHCHECK run in a copy of
WORKDIR with only the image's environment and no embedded PostgreSQL (the image has no
`embedded` extra). What this cannot show is the base image itself.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.live import free_port, wait_until_answering

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "docker-test-key-0123456789"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    found = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "") for parts in found]


def only(name: str) -> str:
    values = [arguments for instruction, arguments in instructions() if instruction == name]
    assert len(values) == 1, f"expected one {name}, found {values}"
    return values[0]


def ignored(relative: Path, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching, for the patterns we use (`name`, `dir/name`, `**/name`)."""
    parts = relative.parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(
        any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        if pattern.startswith("**/")
        else any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        for pattern in patterns
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """WORKDIR as the image has it: every COPY source, less what .dockerignore leaves out."""
    target = tmp_path_factory.mktemp("image") / "srv"
    target.mkdir()
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in dockerignore if line.strip()]
    for instruction, arguments in instructions():
        if instruction != "COPY":
            continue
        *sources, destination = shlex.split(arguments)
        for source in sources:
            path, into = ROOT / source, target / destination
            if path.is_file():
                shutil.copy2(path, into / path.name if destination.endswith("/") else into)
                continue
            for file in path.rglob("*"):
                if file.is_file() and not ignored(file.relative_to(ROOT), patterns):
                    copied = into / file.relative_to(path)
                    copied.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, copied)
    return target


def test_the_base_image_runs_the_python_the_project_requires() -> None:
    base = only("FROM")
    assert base.startswith("python:3.") and base.endswith("-slim")
    minor = int(base.removeprefix("python:3.").split("-")[0])
    assert minor >= 11  # requires-python = ">=3.11"
    assert image_env()["STATS_HOST"] == "0.0.0.0", "a container must listen beyond loopback"
    assert "--host" not in json.loads(only("CMD")), "a --host in CMD would override -e STATS_HOST"
    assert only("USER") != "root" and only("EXPOSE") == "8000"


@pytest.fixture(scope="module")
def wheel(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `RUN pip install .` builds in WORKDIR."""
    assert "pip install ." in only("RUN")
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(  # noqa: S603 - pip on our own project
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), "./"],
        cwd=workdir, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("dify_stats-*.whl")
    return found


@pytest.fixture(scope="module")
def image_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh interpreter holding the wheel, as the image does. Third-party packages come from the
    test environment (the image downloads the same ones), but not its editable dify-stats."""
    venv = tmp_path_factory.mktemp("image-python")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)  # noqa: S603
    python = venv / "bin" / "python"
    site = subprocess.run(  # noqa: S603
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    return str(python)


def test_pip_install_of_the_context_installs_every_module_and_sql_file(wheel: Path) -> None:
    inside = {name for name in zipfile.ZipFile(wheel).namelist() if not name.startswith("dify_stats-")}
    expected = {
        file.relative_to(ROOT).as_posix()
        for package in ("app", "queries", "schemas")
        for file in (ROOT / package).rglob("*")
        if file.suffix in {".py", ".sql"} and "__pycache__" not in file.parts
    }
    assert inside == expected


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, arguments in instructions():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def container_env(port: int, blocker: Path, **settings: str) -> dict[str, str]:
    """The image's ENV, then what `docker run -e` passes (which wins); pgserver made unimportable
    as in the image."""
    env = {"PATH": os.environ["PATH"], "HOME": str(blocker), **image_env()}
    env.update({"STATS_PORT": str(port), **settings})
    blocker.mkdir(exist_ok=True)
    (blocker / "pgserver.py").write_text("raise ModuleNotFoundError('pgserver', name='pgserver')\n")
    env["PYTHONPATH"] = str(blocker)
    return env


@contextmanager
def container(python: str, workdir: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    command = [python if part == "python" else part for part in json.loads(only("CMD"))]
    process = subprocess.Popen(command, cwd=workdir, env=env, stderr=subprocess.PIPE, text=True)  # noqa: S603
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_container_serves_and_passes_its_healthcheck(
    image_python: str, workdir: Path, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = container_env(
        port, tmp_path / "home", STATS_DATABASE_URL=database_url, STATS_API_KEYS=f"{API_KEY}=*"
    )
    with container(image_python, workdir, env) as process:
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{base}/healthz", 60, process)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        healthcheck = only("HEALTHCHECK").split(" CMD ", 1)[1]
        checked = subprocess.run(  # noqa: S603 - the Dockerfile's own check, as Docker runs it
            ["/bin/sh", "-c", healthcheck.replace("python ", f"{image_python} ", 1)],
            env=env, cwd=workdir, capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        assert httpx.get(f"{base}/grafana", timeout=10).status_code == 401
        assert_listens_on(port, "0.0.0.0")
        authorized = {"Authorization": f"Bearer {API_KEY}"}
        assert httpx.get(f"{base}/grafana", headers=authorized, timeout=10).status_code == 200


def test_a_container_without_a_database_says_what_to_set(
    image_python: str, workdir: Path, tmp_path: Path
) -> None:
    """The first mistake with the image: `docker run dify-stats` with no database URL."""
    env = container_env(free_port(), tmp_path / "home", STATS_API_KEYS=f"{API_KEY}=*")
    with container(image_python, workdir, env) as process:
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "STATS_DATABASE_URL" in stderr and "Traceback" not in stderr


def assert_listens_on(port: int, host: str) -> None:
    import psutil

    bound = {
        conn.laddr.ip for conn in psutil.net_connections("tcp") if conn.laddr and conn.laddr.port == port
    }
    assert host in bound, bound


def test_docker_run_e_stats_host_is_honoured(
    image_python: str, workdir: Path, database_url: str, tmp_path: Path
) -> None:
    """`-e STATS_HOST=127.0.0.1` (e.g. host networking behind a local proxy): loopback only, and
    then no key is needed."""
    port = free_port()
    env = container_env(port, tmp_path / "home", STATS_DATABASE_URL=database_url, STATS_HOST="127.0.0.1")
    with container(image_python, workdir, env) as process:
        wait_until_answering(f"http://127.0.0.1:{port}/readyz", 60, process)
        assert process.poll() is None
        assert_listens_on(port, "127.0.0.1")


def test_dockerignore_leaves_out_every_data_directory_the_readme_creates() -> None:
    readme = (ROOT / "README.md").read_text()
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    data_dirs = {".stats-data", ".venv", "bench/data", *re.findall(r"STATS_DATA_DIR=([\w./-]+)", readme)}
    assert ".stats-data-split" in data_dirs  # the README's split demo
    for directory in data_dirs:
        assert ignored(Path(directory) / "pg" / "PG_VERSION", patterns), directory
    assert not ignored(Path("app") / "main.py", patterns)

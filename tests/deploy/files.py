"""Where the deployment files are, and the settings they must speak: shared by the deploy tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from libs.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# The names a WARMBEE_* variable may have: pydantic-settings ignores unknown ones, so a misspelt
# variable in a deployment file would be silently without effect. The tests refuse it instead.
SETTING_VARIABLES = {f"WARMBEE_{name.upper()}" for name in Settings.model_fields}
# Read by deploy/docker/healthcheck.py, not by the services.
SETTING_VARIABLES.add("WARMBEE_HEALTHCHECK_URL")
DEFAULTS = Settings()
TOPICS = {DEFAULTS.topic_activity_events, DEFAULTS.topic_activity_events_dlq, DEFAULTS.topic_points_ledger}


def tool(name: str) -> str:
    """A console script of the project's environment (installed from the dev group of uv.lock)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed: run `make install` (it is in the dev group of uv.lock)"
    return found

"""Where things are in this repository, for tests that read its files or run its commands."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = PROJECT_ROOT / "server" / "dashboard"
DEPLOY = PROJECT_ROOT / "deploy"

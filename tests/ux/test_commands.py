"""Management commands explain a missing setting in one line (issue 12, item 7)."""

import os
import subprocess
import sys

import pytest

from tests.live import ROOT


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """manage.py in a clean environment: none of this process's settings, no .env file."""
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "ENV_FILE": "/nonexistent", **env}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=120)


def test_reconcile_help_works_without_debug():
    result = run_manage("reconcile", "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: manage.py reconcile")
    assert "--import" in result.stdout


def test_a_real_command_without_debug_still_says_why_settings_refused():
    result = run_manage("check")

    assert result.returncode == 1
    assert result.stderr.startswith("Settings refused to load: SECRET_KEY must be set")


@pytest.mark.django_db
def test_reconcile_import_without_the_admin_key_ends_in_one_clear_line():
    from tests.live import subprocess_env

    env = {k: v for k, v in subprocess_env().items() if k in ("DATABASE_URL", "LIVE_TEST_DB_NAME")}
    result = run_manage("reconcile", "--import", DEBUG="true", DJANGO_SETTINGS_MODULE="realtime_saas.settings_test",
                        OPENAI_ADMIN_KEY="", **env)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: --import needs OPENAI_ADMIN_KEY (an OpenAI admin key, for the Usage and Costs APIs); "
        "without it, reconcile what was imported or uploaded already."
    ]
    assert "Traceback" not in result.stderr

"""`make fuzz`: schemathesis against a live daphne, signed in, with a bounded number of cases.

Builds a throwaway SQLite database under var/fuzz/, creates a verified user with credits, starts
fakes/openai, fakes/stripe and daphne on free ports, signs the user in (session cookie and CSRF
token, as the browser's JS sends them) and runs schemathesis over /api/schema/ with the checks that
matter for the contract: no server error, and statuses, content types, headers and bodies as the
schema documents them. Exits non-zero when schemathesis finds any failure.

    python scripts/fuzz.py [--max-examples 25] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "fuzz"
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own http:// address)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.2)


def product_env(*, openai_port: int, stripe_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DEBUG": "true",
        "ENV_FILE": "/nonexistent",  # a developer's .env must not point the run at real services
        "DATABASE_URL": f"sqlite:///{WORK / 'db.sqlite3'}",
        "REDIS_URL": "",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "CELERY_DATA_DIR": str(WORK / "celery"),
        "OPENAI_API_KEY": "sk-proj-fake",
        "OPENAI_ADMIN_KEY": "sk-admin-fake",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{openai_port}/v1",
        "STRIPE_SECRET_KEY": "sk_test_fake",
        "STRIPE_WEBHOOK_SECRET": "whsec_fake",
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        # The throttles answer 429 (documented); high rates let the cases reach the endpoints' logic.
        "THROTTLE_CALL_START": "100000/min",
        "THROTTLE_KEY_MINT": "100000/min",
        "THROTTLE_CALL_CONTROL": "100000/min",
        "THROTTLE_CHECKOUT": "100000/min",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    })
    return env


SETUP = """
import json, secrets
import django
django.setup()
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from allauth.account.models import EmailAddress
from accounts.models import User
from billing import services as billing
user = User.objects.create_user(email="fuzz@example.com", password=secrets.token_urlsafe(16), name="Fuzz")
EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
billing.grant(user=user, credits=100000, idempotency_key="fuzz-grant", kind="bonus")
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
# An ended call of the user's, so the operations that take a call id reach more than their 404.
from datetime import timedelta
from django.utils import timezone
from sessions.models import Assistant, CallState, RealtimeCall
assistant = Assistant.objects.filter(is_active=True).first()
now = timezone.now()
call = RealtimeCall.objects.create(
    user=user, assistant=assistant, state=CallState.ENDED, model=assistant.model, markup_percent=50,
    allowed_seconds=assistant.max_call_seconds, created_at=now - timedelta(minutes=6), started_at=now - timedelta(minutes=5),
    expected_end_at=now + timedelta(minutes=5), ending_at=now - timedelta(minutes=3),
    ended_at=now - timedelta(minutes=3), credits_held=100, credits_charged=10, end_reason="user_hangup",
)
print(json.dumps({"sessionid": session.session_key, "call_id": call.public_id}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25, help="cases per operation and phase")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", default="2")
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "celery").mkdir(parents=True)
    py = sys.executable
    openai_port, stripe_port, web_port = free_port(), free_port(), free_port()
    env = product_env(openai_port=openai_port, stripe_port=stripe_port)
    base = f"http://127.0.0.1:{web_port}"
    processes: list[subprocess.Popen[bytes]] = []
    logs = {name: (WORK / f"{name}.log").open("wb") for name in ("openai", "stripe", "daphne")}
    try:
        subprocess.run([py, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        setup = subprocess.run([py, "-c", SETUP], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "realtime_saas.settings"},
                               capture_output=True, text=True)
        if setup.returncode:
            raise SystemExit(f"setting up the fuzz user failed:\n{setup.stderr}")
        seeded = json.loads(setup.stdout.strip().splitlines()[-1])
        sessionid = seeded["sessionid"]
        config = WORK / "schemathesis.toml"
        config.write_text(f'[parameters]\n"path.call_id" = "{seeded["call_id"]}"\n')
        csrf = secrets.token_hex(16)  # 32 characters: Django accepts the cookie's secret as the header's token
        processes.append(subprocess.Popen(
            [py, "-m", "fakes.openai", "--host", "127.0.0.1", "--port", str(openai_port), "--parent-pid", str(os.getpid())],
            cwd=ROOT, env=env, stdout=logs["openai"], stderr=subprocess.STDOUT))
        processes.append(subprocess.Popen(
            [py, "-m", "fakes.stripe", "--host", "127.0.0.1", "--port", str(stripe_port),
             "--webhook", f"{base}/billing/stripe/webhook/", "--webhook-secret", "whsec_fake"],
            cwd=ROOT, env=env, stdout=logs["stripe"], stderr=subprocess.STDOUT))
        processes.append(subprocess.Popen(
            [py, "-m", "daphne", "-b", "127.0.0.1", "-p", str(web_port), "realtime_saas.asgi:application"],
            cwd=ROOT, env=env, stdout=logs["daphne"], stderr=subprocess.STDOUT))
        wait_http(f"{base}/healthz")
        command = [
            str(Path(py).parent / "schemathesis"), "--config-file", str(config), "run", f"{base}/api/schema/", "--url", base,
            "-H", f"Cookie: sessionid={sessionid}; csrftoken={csrf}", "-H", f"X-CSRFToken: {csrf}",
            "--checks", CHECKS, "--max-examples", str(args.max_examples), "--workers", args.workers,
            "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
            "--request-timeout", "15", "--no-color",
            "--report", "junit", "--report-junit-path", str(WORK / "junit.xml"),
        ]
        if args.seed is not None:
            command += ["--seed", str(args.seed)]
        started = time.monotonic()
        # Run from var/fuzz/: schemathesis keeps its state (.schemathesis/) in its working directory.
        result = subprocess.run(command, cwd=WORK, env={**env, "SCHEMATHESIS_HOOKS": "scripts.fuzz_hooks"})
        elapsed = time.monotonic() - started
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs.values():
            log.close()
    daphne_log = (WORK / "daphne.log").read_text(errors="replace")
    server_errors = sum(1 for line in daphne_log.splitlines() if '" 500 ' in line or "Internal Server Error" in line)
    print(f"\nfuzz: schemathesis exit {result.returncode} in {elapsed:.0f} s; "
          f"500s in the daphne log: {server_errors} (logs and junit.xml in {WORK.relative_to(ROOT)}/)")
    return result.returncode or (1 if server_errors else 0)


if __name__ == "__main__":
    sys.exit(main())

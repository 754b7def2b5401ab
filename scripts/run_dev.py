"""`make run`: migrate, create the demo accounts, and run every process in the foreground.

Processes (honcho; Ctrl-C stops them all): granian (web: HTTP, the WSGI app, one process per core),
daphne (live: the WebSocket, on the next port), a Celery worker with beat, the call supervisor,
and — unless real keys are configured in `.env` — fakes/openai and
fakes/stripe, with the product pointed at them.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOST, PORT = "127.0.0.1", 8000
WEB_THREADS = 16  # per web process: a call start mostly waits on OpenAI, with the GIL released
LIVE_PORT = PORT + 1  # daphne: the live WebSocket the pages open (LIVE_WEBSOCKET_URL)
FAKE_OPENAI_PORT = int(os.environ.get("FAKE_OPENAI_PORT", "8765"))
FAKE_STRIPE_PORT = int(os.environ.get("FAKE_STRIPE_PORT", "12111"))
STRIPE_WEBHOOK_PATH = "/billing/stripe/webhook/"


def read_dotenv() -> dict[str, str]:
    import environ

    values: dict[str, str] = {}
    path = ROOT / ".env"
    if path.is_file():
        env = environ.Env()
        env.read_env(str(path), overwrite=False)
        # read_env writes into os.environ; keep a copy of what the file set, for the decisions below.
        for line in path.read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if key and not key.startswith("#") and key in os.environ:
                values[key] = os.environ[key]
    return values


def main() -> int:
    read_dotenv()
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")
    env.setdefault("DJANGO_SETTINGS_MODULE", "realtime_saas.settings")
    env.setdefault("PYTHONUNBUFFERED", "1")
    (ROOT / "var").mkdir(exist_ok=True)
    py = sys.executable
    processes: dict[str, str] = {}

    if not env.get("OPENAI_API_KEY"):
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{FAKE_OPENAI_PORT}/v1"
        env["OPENAI_API_KEY"] = "sk-proj-fake"
        env["OPENAI_ADMIN_KEY"] = "sk-admin-fake"
        processes["openai"] = (
            f"{py} -m fakes.openai --host 127.0.0.1 --port {FAKE_OPENAI_PORT} "
            f"--usage-db {ROOT / 'var' / 'fake-openai-usage.sqlite3'}"
        )
    if not env.get("STRIPE_SECRET_KEY"):
        env["STRIPE_API_BASE"] = f"http://127.0.0.1:{FAKE_STRIPE_PORT}"
        env["STRIPE_SECRET_KEY"] = "sk_test_fake"
        env["STRIPE_WEBHOOK_SECRET"] = "whsec_fake"
        processes["stripe"] = (
            f"{py} -m fakes.stripe --host 127.0.0.1 --port {FAKE_STRIPE_PORT} "
            f"--webhook http://{HOST}:{PORT}{STRIPE_WEBHOOK_PATH} --webhook-secret whsec_fake"
        )

    manage = [py, str(ROOT / "manage.py")]
    for args in (["migrate", "--no-input"], ["bootstrap_demo"]):
        if subprocess.call(manage + args, env=env, cwd=ROOT) != 0:
            return 1

    # The pages (http://HOST:PORT) open the WebSocket on daphne's port: a cookie is the same on every
    # port of a host, and the socket's origin check trusts the pages' origin through CSRF_TRUSTED_ORIGINS.
    env.setdefault("LIVE_WEBSOCKET_URL", f"ws://{HOST}:{LIVE_PORT}/ws/live/")
    trusted = [o for o in env.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
    if f"http://{HOST}:{PORT}" not in trusted:
        env["CSRF_TRUSTED_ORIGINS"] = ",".join([*trusted, f"http://{HOST}:{PORT}"])
    processes["web"] = (
        f"{py} -m granian --interface wsgi --host {HOST} --port {PORT} --workers {os.cpu_count() or 1} "
        f"--blocking-threads {WEB_THREADS} realtime_saas.wsgi:application"
    )
    processes["live"] = f"{py} -m daphne -b {HOST} -p {LIVE_PORT} realtime_saas.asgi:application"
    processes["worker"] = (
        f"{py} -m celery -A realtime_saas worker --beat --pool=threads --concurrency=4 --loglevel=INFO"
    )
    processes["supervisor"] = f"{py} manage.py supervise_calls"

    from honcho.manager import Manager

    manager = Manager()
    for name, command in processes.items():
        manager.add_process(name, command, env=env, cwd=str(ROOT))
    manager.loop()
    return manager.returncode or 0


if __name__ == "__main__":
    sys.exit(main())

"""Test settings: the real settings with fast hashing, eager-safe mail and isolated state."""

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-used-anywhere-else-0123456789")
os.environ["ENV_FILE"] = "/nonexistent"  # a developer's .env must not leak into tests

from .settings import *  # noqa: F403
from .settings import DATABASES, VAR_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# pytest-django creates and drops test databases: a pool would keep connections open across that.
# (tests/core/test_settings.py runs a server with the production default, the pool, once.)
if os.environ.get("DATABASE_POOL", "false").lower() != "true":
    DATABASES["default"].get("OPTIONS", {}).pop("pool", None)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)  # a fresh clone has no var/ until something creates it
    DATABASES["default"]["NAME"] = str(VAR_DIR / "test.sqlite3")
    # A file (live-server subprocesses must open it too), named per process so that two test
    # runs in one checkout never share one.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
ACCOUNT_RATE_LIMITS = False

# A live server started by the tests in a subprocess (tests/live.py) uses the test database
# that pytest-django created, whose name only the parent knows.
if os.environ.get("LIVE_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["LIVE_TEST_DB_NAME"]

# Tasks run eagerly (on commit, in the process that enqueued them) unless a test starts a real
# worker (tests/live.py) and sets CELERY_TASK_ALWAYS_EAGER=false for the servers it starts.
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "true").lower() == "true"
# xdist workers share Redis: keep their channel groups apart.
CHANNEL_LAYERS["default"].setdefault("CONFIG", {})  # noqa: F405
if "prefix" in CHANNEL_LAYERS["default"]["CONFIG"]:  # noqa: F405
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "test-" + os.environ.get("PYTEST_XDIST_WORKER", "main")  # noqa: F405
else:
    CHANNEL_LAYERS["default"].pop("CONFIG")  # noqa: F405
# One cache namespace per test process, shared with the servers it starts (they inherit the
# variable), so throttle counters and cached sessions never leak between runs or xdist workers.
os.environ.setdefault("TEST_CACHE_PREFIX", f"test-{os.getpid()}-{os.urandom(3).hex()}")
# xdist workers inherit the variable from the controller, and their users share primary keys
# (alice is pk 1 in every worker's database): the worker's name keeps their throttles apart.
CACHES["default"]["KEY_PREFIX"] = (  # noqa: F405
    f"{os.environ['TEST_CACHE_PREFIX']}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
)
if "KEY_PREFIX" in CACHES["heartbeat"]:  # noqa: F405
    CACHES["heartbeat"]["KEY_PREFIX"] = CACHES["default"]["KEY_PREFIX"] + "-hb"  # noqa: F405
else:  # the file cache of the embedded default: a folder per test process (and its servers)
    CACHES["heartbeat"]["LOCATION"] = str(VAR_DIR / "test-cache" / CACHES["default"]["KEY_PREFIX"])  # noqa: F405
# Without Redis the broker is the filesystem under var/celery, which `make run`'s worker reads: the
# tests' servers and workers get a queue of their own per test process (inherited like the cache
# prefix), so a test's tasks never land in the developer's queue. A CELERY_DATA_DIR set on purpose wins.
if CELERY_BROKER_URL.startswith("filesystem://") and not os.environ.get("CELERY_DATA_DIR"):  # noqa: F405
    _queue_dir = VAR_DIR / "test-celery" / CACHES["default"]["KEY_PREFIX"]  # noqa: F405
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
    }

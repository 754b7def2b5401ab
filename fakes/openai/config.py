import hashlib
from dataclasses import dataclass, field

DEFAULT_PROJECT_KEY = "sk-proj-fake"
DEFAULT_ADMIN_KEY = "sk-admin-fake"
DEFAULT_PROJECT_ID = "proj_fake"


def key_id_for(key: str) -> str:
    # Derived from the key itself so that a restarted fake (and the usage it persisted) keeps
    # reporting the same key id, as OpenAI does for a key's lifetime.
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class KeyInfo:
    key: str
    key_id: str
    project_id: str | None
    kind: str  # "project" | "admin"


def parse_project_key(spec: str) -> KeyInfo:
    """``KEY`` or ``KEY:PROJECT_ID``; keys without a project share the default project."""
    key, _, project = spec.partition(":")
    return KeyInfo(key=key, key_id=key_id_for(key), project_id=project or DEFAULT_PROJECT_ID, kind="project")


def parse_admin_key(key: str) -> KeyInfo:
    return KeyInfo(key=key, key_id=key_id_for(key), project_id=None, kind="admin")


@dataclass
class FakeConfig:
    project_keys: list[KeyInfo] = field(default_factory=list)
    admin_keys: list[KeyInfo] = field(default_factory=list)
    media: bool = True
    usage_db: str = ":memory:"
    sideband_404_delay: float = 0.0
    sideband_requires_connection: bool = True  # reference §3 "Timing"
    sideband_hello: str = "none"  # "none" | "session.created" | "session.updated"
    session_cap_seconds: float = 3600.0
    connect_timeout_seconds: float = 30.0
    ephemeral_usage_under_minting_key: bool = True
    call_not_found_status: int = 404
    latency_ms: float = 0.0
    words_per_second: float = 3.0
    delta_interval_ms: float = 20.0

    def __post_init__(self) -> None:
        if not self.project_keys:
            self.project_keys = [parse_project_key(DEFAULT_PROJECT_KEY)]
        if not self.admin_keys:
            self.admin_keys = [parse_admin_key(DEFAULT_ADMIN_KEY)]

    def lookup(self, key: str) -> KeyInfo | None:
        for info in (*self.project_keys, *self.admin_keys):
            if info.key == key:
                return info
        return None

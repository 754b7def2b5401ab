"""What the fake served, one row per ``response.done``, in SQLite (a file survives restarts)."""

import sqlite3
import threading
from dataclasses import dataclass

from fakes.openai.pricing import TOKEN_CLASSES

_COLUMNS = (
    "ts",
    "call_id",
    "project_id",
    "api_key_id",
    "model",
    "input_tokens",
    "output_tokens",
    *TOKEN_CLASSES,
)
# Built from the constant column names above, never from input.
_INSERT = f"INSERT INTO usage ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"  # noqa: S608
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM usage WHERE 1=1"  # noqa: S608


@dataclass(frozen=True)
class UsageRow:
    ts: int
    call_id: str | None
    project_id: str | None
    api_key_id: str | None
    model: str
    input_tokens: int
    output_tokens: int
    tokens: dict[str, int]


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def split_usage(usage: dict) -> tuple[int, int, dict[str, int]]:
    """Turn a Realtime ``response.usage`` into (input_tokens, output_tokens, per-class counts).

    In ``response.usage`` the per-modality input counts include their cached part; the Usage API
    reports them uncached, so the cached part is subtracted here.
    """
    usage = usage or {}
    input_tokens = _int(usage.get("input_tokens"))
    output_tokens = _int(usage.get("output_tokens"))
    itd = usage.get("input_token_details") or {}
    ctd = itd.get("cached_tokens_details") or {}
    otd = usage.get("output_token_details") or {}
    text, audio, image = (
        _int(itd.get("text_tokens")),
        _int(itd.get("audio_tokens")),
        _int(itd.get("image_tokens")),
    )
    c_text, c_audio, c_image = (
        _int(ctd.get("text_tokens")),
        _int(ctd.get("audio_tokens")),
        _int(ctd.get("image_tokens")),
    )
    cached_total = _int(itd.get("cached_tokens"))
    if not (c_text or c_audio or c_image) and cached_total:
        c_text = min(cached_total, text) if text else cached_total
    if not (text or audio or image) and input_tokens:
        # A hand-written usage without details still has to be priced: call it text.
        text = input_tokens
    tokens = {
        "input_text_tokens": max(text - c_text, 0),
        "input_cached_text_tokens": c_text,
        "input_audio_tokens": max(audio - c_audio, 0),
        "input_cached_audio_tokens": c_audio,
        "input_image_tokens": max(image - c_image, 0),
        "input_cached_image_tokens": c_image,
        "output_text_tokens": _int(otd.get("text_tokens")),
        "output_audio_tokens": _int(otd.get("audio_tokens")),
    }
    if not (tokens["output_text_tokens"] or tokens["output_audio_tokens"]) and output_tokens:
        tokens["output_text_tokens"] = output_tokens
    return input_tokens, output_tokens, tokens


class UsageStore:
    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        # One connection shared by the event loop and (rarely) the control API; the lock keeps
        # sqlite3 from complaining about cross-thread use if a caller ever uses an executor.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in TOKEN_CLASSES)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS usage (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, call_id TEXT, "
            f"project_id TEXT, api_key_id TEXT, model TEXT NOT NULL, input_tokens INTEGER NOT NULL, "
            f"output_tokens INTEGER NOT NULL, {cols})"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts)")
        self._db.commit()
        self._dirty = False

    def record(
        self,
        *,
        ts: int,
        call_id: str | None,
        project_id: str | None,
        api_key_id: str | None,
        model: str,
        usage: dict,
    ) -> UsageRow:
        input_tokens, output_tokens, tokens = split_usage(usage)
        row = UsageRow(ts, call_id, project_id, api_key_id, model, input_tokens, output_tokens, tokens)
        values = (
            ts,
            call_id,
            project_id,
            api_key_id,
            model,
            input_tokens,
            output_tokens,
            *(tokens[c] for c in TOKEN_CLASSES),
        )
        with self._lock:
            self._db.execute(_INSERT, values)
            # Committed in batches by flush(): a commit per response.done would cost an fsync each.
            self._dirty = True
        return row

    def flush(self) -> None:
        with self._lock:
            if self._dirty:
                self._db.commit()
                self._dirty = False

    def rows(self, start: int | None = None, end: int | None = None) -> list[UsageRow]:
        sql = _SELECT
        args: list[int] = []
        if start is not None:
            sql += " AND ts >= ?"
            args.append(start)
        if end is not None:
            sql += " AND ts < ?"
            args.append(end)
        with self._lock:
            found = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [
            UsageRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], dict(zip(TOKEN_CLASSES, r[7:], strict=True)))
            for r in found
        ]

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM usage")
            self._db.commit()
            self._dirty = False

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

"""PostgreSQL helpers shared by the benchmarks (each runs on a database of its own)."""

from urllib.parse import urlsplit, urlunsplit


def recreate_database(database_url: str) -> None:
    """DROP and CREATE the database named in the URL: never point it at real data."""
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name or not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing database name {name!r}")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def transactions_committed(database_url: str) -> int:
    """The database's committed transactions so far: each autocommit statement counts as one."""
    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0])

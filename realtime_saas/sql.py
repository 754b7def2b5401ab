"""Hand-written statements for the hot paths (a call start, a hold, a settlement).

Building a query with the ORM costs more CPU than PostgreSQL spends running it (PITFALLS), so the
few statements that run on every call start are written by hand. Their column lists come from the
models: a column a migration adds is read back, and inserted with its model default, without
touching the SQL. Values always travel as parameters; only model metadata is formatted into SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import Any, TypeVar

from django.db import connection, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def _columns(model: type[Model]) -> list[Field[Any, Any]]:
    return list(model._meta.concrete_fields)


def _column(field: Field[Any, Any]) -> str:
    assert field.column is not None  # concrete fields have a column
    return field.column


def returning_columns(model: type[Model], table: str) -> str:
    """Every column of `model`, in the model's field order, qualified by `table` (SELECT/RETURNING)."""
    return ", ".join(f"{table}.{_column(field)}" for field in _columns(model))


def instance_from_row(model: type[M], row: Sequence[Any]) -> M:
    """An instance of `model` from a row read with `returning_columns` (model field order)."""
    return model.from_db(connection.alias, [field.attname for field in _columns(model)], row)


def loaded(instance: M) -> M:
    """`instance`, built in Python from values a statement of ours just wrote, marked as loaded from
    the database (so Django treats it as an existing row)."""
    instance._state.adding, instance._state.db = False, connection.alias
    return instance


@lru_cache(maxsize=32)
def _defaulted(model: type[Model], given: frozenset[str]) -> tuple[Field[Any, Any], ...]:
    return tuple(f for f in _columns(model) if f.column not in given and not f.primary_key)


def insert_parts(model: type[Model], values: dict[str, str]) -> tuple[str, str]:
    """(columns, value expressions) of an INSERT of `model`: `values` maps columns to SQL
    expressions; every other column takes its model default from the `default_<column>` parameter
    (`insert_defaults`)."""
    rest = _defaulted(model, frozenset(values))
    columns = [*values, *(_column(f) for f in rest)]
    expressions = [*values.values(), *(f"%(default_{f.column})s" for f in rest)]
    return ", ".join(columns), ", ".join(expressions)


def insert_defaults(model: type[Model], given: Iterable[str]) -> dict[str, Any]:
    """The `default_<column>` parameters of `insert_parts(model, …)` for the columns not given."""
    return {
        f"default_{f.column}": f.get_db_prep_save(f.get_default(), connection)
        for f in _defaulted(model, frozenset(given))
    }


def instance_insert(instance: Model, *, prefix: str, overrides: dict[str, str] | None = None,
                    ) -> tuple[str, str, dict[str, Any]]:
    """(columns, value expressions, parameters) of an INSERT of a new `instance`: what Django's
    own INSERT would send (`pre_save` stamps auto_now fields), except the columns in `overrides`,
    which map to SQL expressions (e.g. the id a CTE just returned). Parameters are named
    `<prefix><column>`, so several inserts can share a statement."""
    overrides = overrides or {}
    fields = _defaulted(type(instance), frozenset(overrides))
    columns = ", ".join([*overrides, *(_column(f) for f in fields)])
    values = ", ".join([*overrides.values(), *(f"%({prefix}{f.column})s" for f in fields)])
    params = {f"{prefix}{f.column}": f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields}
    return columns, values, params


class _LoggedCursor(CursorDebugWrapper):
    """Django's debug cursor, logging the statement as written (a prepared statement has no
    interpolated text to report)."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(sql, params):
            return CursorWrapper.execute(self, sql, params)


@contextmanager
def _cursor() -> Iterator[CursorWrapper]:
    """A cursor for our statements. On PostgreSQL a server-side-binding one whose statements are
    prepared on first use (per connection: PostgreSQL then plans each of these few statements once,
    not on every call start); Django's own cursors bind on the client and never prepare. Wrapped
    like Django's, so its errors, logging and query capture apply."""
    if not is_postgresql():
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:  # Django turns psycopg's automatic preparing off
        raw.prepare_threshold = 0  # only server-binding cursors (these) prepare at all
    wrapper = _LoggedCursor if connection.queries_logged else CursorWrapper
    with wrapper(psycopg.Cursor(raw), connection) as cursor:
        yield cursor


def one_statement(sql: str, params: dict[str, Any] | Sequence[Any]) -> tuple[Any, ...] | None:
    """Run one statement as its own transaction (autocommit: PostgreSQL makes a statement atomic by
    itself, BEGIN and COMMIT would be two more round trips); its first row, or None.

    Like `transaction.atomic(durable=True)`, it refuses to run inside a caller's transaction (a
    test's own transaction excepted): the caller would otherwise think it committed.
    """
    if connection.atomic_blocks and not getattr(connection.atomic_blocks[-1], "_from_testcase", False):
        raise RuntimeError("This operation commits by itself: do not call it inside a transaction.")
    # Inside a test's transaction a failed statement would abort the whole test: a savepoint there.
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), _cursor() as cursor:
        cursor.execute(sql, params)
        row: tuple[Any, ...] | None = cursor.fetchone()
    return row


def fetch_one(sql: str, params: dict[str, Any] | Sequence[Any]) -> tuple[Any, ...] | None:
    """The first row of a statement run in the caller's transaction (or autocommit)."""
    with _cursor() as cursor:
        cursor.execute(sql, params)
        row: tuple[Any, ...] | None = cursor.fetchone()
    return row

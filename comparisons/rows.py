"""Model instances from rows read by hand-written SQL on the rating hot path.

The ORM compiles every queryset anew; on the rater loop that compiling cost more
CPU than the database spent answering, so a few statements are written out in SQL
(PostgreSQL and SQLite alike) and their rows turned into model instances here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import connection, models
from django.utils import timezone
from django.utils.dateparse import parse_datetime


def db_time(value: datetime) -> Any:
    """A datetime as the backend stores it (SQLite: naive UTC text, as the ORM writes it)."""
    return connection.ops.adapt_datetimefield_value(value)


def aware(value: Any) -> datetime:
    """A datetime read by raw SQL (SQLite gives it naive, in UTC, or as text) as an aware one."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def _fields(model: type[models.Model], omit: tuple[str, ...]) -> list[Any]:
    return [f for f in model._meta.concrete_fields if f.name not in omit]


def columns(model: type[models.Model], alias: str, *, omit: tuple[str, ...] = ()) -> str:
    """The SELECT list of a model's concrete columns (but those named in `omit`), qualified by a table alias,
    in field order."""
    return ", ".join(f"{alias}.{connection.ops.quote_name(f.column)}" for f in _fields(model, omit))


def instance(model: type[models.Model], values: dict[str, Any]) -> Any:
    """`model.from_db` from {attname: value}, datetimes, booleans and JSON as the ORM gives them. Fields
    left out of `values` are deferred, as with `QuerySet.defer()`: read from the database when first used."""
    fields = [f for f in model._meta.concrete_fields if f.attname in values]
    converted = []
    for f in fields:
        value = values[f.attname]
        if value is not None and isinstance(f, models.DateTimeField):
            value = aware(value)
        elif value is not None and isinstance(f, models.BooleanField):
            value = bool(value)
        elif value is not None and isinstance(f, models.JSONField):  # read as text by Django's backends
            value = f.from_db_value(value, None, connection)  # type: ignore[arg-type]
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def instance_from_row(
    model: type[models.Model], row: tuple[Any, ...] | list[Any], *, omit: tuple[str, ...] = ()
) -> Any:
    """`instance()` for a row whose values are in `columns()` order (with the same `omit`)."""
    return instance(model, {f.attname: v for f, v in zip(_fields(model, omit), row, strict=True)})

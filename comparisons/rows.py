"""Model instances from rows read by hand-written SQL on the rating hot path.

The ORM compiles every queryset anew; on the rater loop that compiling cost more
CPU than the database spent answering, so a few statements are written out in SQL
(PostgreSQL and SQLite alike) and their rows turned into model instances here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, connection, models
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


def _json(field: models.JSONField) -> Callable[[Any], Any]:
    return lambda value: field.from_db_value(value, None, connection)  # type: ignore[arg-type]


def _converter(field: models.Field[Any, Any]) -> Callable[[Any], Any] | None:
    """What turns a raw column value (not NULL) into what the ORM gives: aware datetimes, booleans (SQLite
    gives 0 and 1), JSON (read as text by Django's backends); None when the value is used as read."""
    if isinstance(field, models.DateTimeField):
        return aware
    if isinstance(field, models.BooleanField):
        return bool
    if isinstance(field, models.JSONField):
        return _json(field)
    return None


class _Plan(NamedTuple):
    attnames: list[str]  # in field order, as `Model.from_db` wants them
    converters: tuple[Callable[[Any], Any] | None, ...]


def _plan(fields: list[Any]) -> _Plan:
    return _Plan([f.attname for f in fields], tuple(_converter(f) for f in fields))


# Which fields and converters a row needs is worked out once per model and shape of row (a few call sites):
# working it out for every row cost 11 of the 29 µs a campaign's instance took, and every vote builds five.
@functools.cache
def _row_plan(model: type[models.Model], omit: tuple[str, ...]) -> _Plan:
    return _plan(_fields(model, omit))


@functools.cache
def _values_plan(model: type[models.Model], attnames: frozenset[str]) -> _Plan:
    return _plan([f for f in model._meta.concrete_fields if f.attname in attnames])


def _from_plan(model: type[models.Model], plan: _Plan, values: Iterable[Any]) -> Any:
    converted = [
        value if convert is None or value is None else convert(value)
        for value, convert in zip(values, plan.converters, strict=True)
    ]
    return model.from_db(DEFAULT_DB_ALIAS, plan.attnames, converted)  # `connection` is the default one


def instance(model: type[models.Model], values: dict[str, Any]) -> Any:
    """`model.from_db` from {attname: value}, datetimes, booleans and JSON as the ORM gives them. Fields
    left out of `values` are deferred, as with `QuerySet.defer()`: read from the database when first used."""
    plan = _values_plan(model, frozenset(values))
    return _from_plan(model, plan, [values[name] for name in plan.attnames])


def instance_from_row(
    model: type[models.Model], row: tuple[Any, ...] | list[Any], *, omit: tuple[str, ...] = ()
) -> Any:
    """`instance()` for a row whose values are in `columns()` order (with the same `omit`)."""
    return _from_plan(model, _row_plan(model, omit), row)

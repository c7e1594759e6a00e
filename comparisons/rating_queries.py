"""Every hand-written SQL statement of the rater path, behind typed functions.

The rater loop (sign-in, next pair, vote) is the hot path of a study. Its statements are written out in
SQL that PostgreSQL and SQLite both run instead of being compiled by the ORM on every request: compiling
cost more CPU than the database spent answering them. Above each statement is the ORM code it is
equivalent to, so a reader can check the SQL against the models (Zulip does this for its hot statements).

Rules of this module:
- table and column names come from the models' `_meta` (`_Names` below), never spelled out by hand;
- every value is a bound parameter, status values included;
- the load rule "votes plus live leases" is one fragment (`_load`) and so is "votes done by a rater in a
  campaign" (`_votes_done`);
- functions only read and write: the decisions (quota, Gone, Conflict, flags) stay in
  `comparisons.services.rating`.

`tests/comparisons/test_rating_queries.py` keeps hand-written SQL of these tables out of the rest of
`comparisons/`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import weakref
from collections.abc import Collection, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from django.contrib.auth import get_user_model
from django.db import ProgrammingError, connection, models, transaction

from comparisons import rows
from comparisons.models import Assignment, Campaign, Comparison, Rater, Session, Vote
from generation.models import Prompt, Response


class _Names:
    """Quoted table and column names of a model: `str(A)` is the table, `A.rater` the column of field
    `rater` (`"rater_id"`)."""

    def __init__(self, model: type[models.Model]) -> None:
        self._model = model
        self._table = connection.ops.quote_name(model._meta.db_table)

    def __str__(self) -> str:
        return self._table

    def __getattr__(self, name: str) -> str:
        field = self._model._meta.get_field(name)
        assert isinstance(field, models.Field) and field.column, name  # a concrete column, not a relation's far side
        return connection.ops.quote_name(field.column)


A, C, G, R, V = _Names(Assignment), _Names(Comparison), _Names(Campaign), _Names(Rater), _Names(Vote)
P, T = _Names(Prompt), _Names(Response)
RC = _Names(Rater.campaigns.through)  # the named raters' campaigns (Rater.campaigns)

_LEASED = Assignment.Status.LEASED.value
_VOTED = Assignment.Status.VOTED.value

# Settings of the transaction that hands out a lease, applied to it alone (`is_local` = true):
# - a lease is worth nothing after a database crash (the rater is simply served another pair), so its commit
#   does not wait for the disk; votes do;
# - its statements run on the plans prepared once per connection. PostgreSQL's generic plan of `current_lease`
#   is the custom plan's, but is costed higher (it cannot know that few leases are live), so PostgreSQL planned
#   that statement afresh on every request: 0.3 ms of the database's CPU per pair served;
# - those plans use indexes only. A plan lives as long as its connection: made while a new study's tables held a
#   few rows, it read the whole table of assignments once per candidate (cheapest on one page) and went on doing
#   so as the study grew (20-110 ms per pick at a few thousand assignments, against 1 ms).
LEASE_TRANSACTION_SETTINGS = (
    "set_config('synchronous_commit', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true), "
    "set_config('enable_seqscan', 'off', true)"
)


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _fetchone(sql: str, params: Sequence[Any] | dict[str, Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _fetchall(sql: str, params: Sequence[Any] | dict[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# ---------------------------------------------------------------- the two shared rules


def _load(alias: str, *, excluding_assignment: bool = False) -> str:
    """The load of comparison `alias`: its votes plus its live leases (those of other raters when
    `excluding_assignment`). Named parameters: `leased`, `now` (and `assignment`).

    ORM: F("votes_count") + Coalesce(Subquery(Assignment.objects.filter(comparison=OuterRef("pk"),
         status=LEASED, leased_until__gt=now)[.exclude(pk=assignment)].values("comparison")
         .annotate(n=Count("pk")).values("n")), 0)
    Each row's live leases are one probe of the (comparison, status, leased_until) index."""
    other = f" AND l.{A.id} <> %(assignment)s" if excluding_assignment else ""
    return (
        f"({alias}.{C.votes_count} + (SELECT COUNT(*) FROM {A} l WHERE l.{A.comparison} = {alias}.{C.id} "  # noqa: S608
        f"AND l.{A.status} = %(leased)s AND l.{A.leased_until} > %(now)s{other}))"
    )


def _votes_done(rater: str, campaign: str) -> str:
    """Votes the rater `rater` cast in campaign `campaign` (SQL expressions).

    ORM: Vote.objects.filter(rater=rater, campaign=campaign).count()
    One range of the (rater, campaign) index; counting VOTED assignments instead visited the comparison of each
    earlier vote of the rater (1.2 ms at 100 votes, and growing)."""
    return f"(SELECT COUNT(*) FROM {V} vv WHERE vv.{V.rater} = {rater} AND vv.{V.campaign} = {campaign})"  # noqa: S608


# ---------------------------------------------------------------- sign-in and campaign


class SignedIn(NamedTuple):
    session_data: str
    user: Any | None  # None when the session is nobody's (signed out, or an anonymous visitor's)
    rater: Rater | None


def _user_with_rater_sql(source: str, where: str, first: str = "", last: str = "", joined: str = "") -> str:
    """SELECT the columns `first`, then the user's and their Rater's (NULLs when they are no rater), then `last`
    from `source` (joining the user as `u`, then the rater as `r`, then `joined`) under `where`."""
    User = get_user_model()  # noqa: N806 - a model class
    return (
        f"SELECT {first}{rows.columns(User, 'u')}, {rows.columns(Rater, 'r')}{last} FROM {source} "  # noqa: S608 - names from _meta
        f"LEFT OUTER JOIN {R} r ON r.{R.user} = u.{_Names(User).id}{joined} WHERE {where}"
    )


# Both built on first use: the user model is only known once apps are ready.
# ORM: User.objects.select_related("rater").filter(pk=user_id).first()
@functools.cache
def _sql_user_with_rater() -> str:
    users = _Names(get_user_model())
    return _user_with_rater_sql(f"{users} u", f"u.{users.id} = %s")


# ORM: Session.objects.select_related("user__rater").filter(session_key=session_key, expire_date__gt=now).first()
# With `vote_target`, the row goes on with `_SQL_VOTE_TARGET` for the token and the session's rater, NULLs when
# that is no assignment of theirs: .annotate(<each column of the vote target, as a subquery>).
@functools.cache
def _sql_session_with_user(vote_target: bool = False) -> str:
    users, sessions = _Names(get_user_model()), _Names(Session)
    target = _SQL_VOTE_TARGET % {"token": "%(token)s", "rater": f"r.{R.id}"}
    return _user_with_rater_sql(
        f"{sessions} s LEFT OUTER JOIN {users} u ON u.{users.id} = s.{sessions.user}",
        f"s.{sessions.session_key} = %(session)s AND s.{sessions.expire_date} > %(now)s",
        first=f"s.{sessions.session_data}, ",
        last=", t.*" if vote_target else "",
        joined=f" LEFT OUTER JOIN LATERAL ({target}) t ON TRUE" if vote_target else "",
    )


def _user_and_rater_width() -> int:
    return len(get_user_model()._meta.concrete_fields) + len(Rater._meta.concrete_fields)


def _user_and_rater(row: tuple[Any, ...]) -> tuple[Any, Rater | None]:
    User = get_user_model()  # noqa: N806 - a model class
    split = len(User._meta.concrete_fields)
    user = rows.instance_from_row(User, row[:split])
    rater = rows.instance_from_row(Rater, row[split:]) if row[split] is not None else None
    return user, rater


def user_with_rater(user_id: Any) -> tuple[Any, Rater | None] | None:
    """The user with this id and their Rater (None when they are no rater) in one statement, or None."""
    row = _fetchone(_sql_user_with_rater(), [user_id])
    return None if row is None else _user_and_rater(row)


def session_with_user(session_key: str, now: datetime) -> SignedIn | None:
    """The session with this key unless it has expired at `now`, with its signed-in user and their Rater, in one
    statement; None when there is no such session.

    Within `vote_target_with_session(token)`, the same statement also reads what `vote_target` reads without
    locks for that token and the session's rater, and keeps it for that call."""
    token = _vote_token_wanted.get() if _postgres() else None  # SQLite has no LATERAL join
    params = {"session": session_key, "now": rows.db_time(now), "token": token}
    row = _fetchone(_sql_session_with_user(vote_target=token is not None), params)
    if row is None:
        return None
    if row[1] is None:
        return SignedIn(session_data=row[0], user=None, rater=None)
    end = 1 + _user_and_rater_width()
    user, rater = _user_and_rater(row[1:end])
    if token is not None and rater is not None:
        target = row[end:]
        _vote_target_read.set((token, rater.pk, None if target[0] is None else _vote_target_from(target)))
    return SignedIn(row[0], user, rater)


# The rater path never uses a campaign's identity-leak report, which can hold thousands of entries:
# it is left out (deferred: read on first use).
_CAMPAIGN_OMIT = ("identity_leaks",)
_CAMPAIGN_COLUMNS = rows.columns(Campaign, "g", omit=_CAMPAIGN_OMIT)

# ORM: Campaign.objects.defer("identity_leaks").filter(slug=slug).first()
_SQL_CAMPAIGN_BY_SLUG = f"SELECT {_CAMPAIGN_COLUMNS} FROM {G} g WHERE g.{G.slug} = %s"  # noqa: S608


def campaign_by_slug(slug: str) -> Campaign | None:
    """The campaign with this slug, or None (every rater request asks it)."""
    row = _fetchone(_SQL_CAMPAIGN_BY_SLUG, [slug])
    return None if row is None else rows.instance_from_row(Campaign, row, omit=_CAMPAIGN_OMIT)


# ---------------------------------------------------------------- the pair a rater sees

# What a rater is shown of assignment `a` (its comparison `c`, campaign `g`): the token, the order, the four texts
# as stored, the rater's votes in the campaign and their quota (the per-rater limit, else the campaign's number
# of pairs, counted when it opened), and the campaign's rendering.
# ORM: .values_list("token", "left_is_a", "comparison__prompt__instruction", "comparison__prompt__input",
#      "comparison__response_a__text", "comparison__response_b__text", <_votes_done>,
#      Coalesce("comparison__campaign__comparisons_per_rater", "comparison__campaign__comparisons_count"),
#      "comparison__campaign__render_mode")
# Scalar subqueries rather than a six-table join: PostgreSQL plans them in a fraction of the time, and
# planning, not running, was most of this statement's cost.
_RATER_VIEW_COLUMNS = (
    f"a.{A.token}, a.{A.left_is_a}, "  # noqa: S608
    f"(SELECT p.{P.instruction} FROM {P} p WHERE p.{P.id} = c.{C.prompt}), "
    f"(SELECT p.{P.input} FROM {P} p WHERE p.{P.id} = c.{C.prompt}), "
    f"(SELECT r.{T.text} FROM {T} r WHERE r.{T.id} = c.{C.response_a}), "
    f"(SELECT r.{T.text} FROM {T} r WHERE r.{T.id} = c.{C.response_b}), "
    f"{_votes_done(f'a.{A.rater}', f'c.{C.campaign}')}, "
    f"COALESCE(g.{G.comparisons_per_rater}, g.{G.comparisons_count}), g.{G.render_mode}"
)
_WITH_CAMPAIGN = f"INNER JOIN {C} c ON c.{C.id} = a.{A.comparison} INNER JOIN {G} g ON g.{G.id} = c.{C.campaign}"
# ORM: Assignment.objects.filter(pk=assignment_id).values_list(<_RATER_VIEW_COLUMNS>)
_SQL_RATER_VIEW = f"SELECT {_RATER_VIEW_COLUMNS} FROM {A} a {_WITH_CAMPAIGN} WHERE a.{A.id} = %(assignment)s"  # noqa: S608


class RaterViewRow(NamedTuple):
    token: str
    left_is_a: bool
    instruction: str
    input: str
    text_a: str
    text_b: str
    votes_done: int
    quota: int
    render_mode: str


def rater_view_row(assignment_id: int) -> RaterViewRow | None:
    """What the rater is shown of an assignment (`_RATER_VIEW_COLUMNS`; texts A and B as stored)."""
    row = _fetchone(_SQL_RATER_VIEW, {"assignment": assignment_id})
    return None if row is None else RaterViewRow(*row)


# ---------------------------------------------------------------- next pair

# ORM: Rater.objects.select_for_update().filter(pk=rater_id).values_list("pk")
_SQL_LOCK_RATER = f"SELECT {{}} FROM {R} WHERE {R.id} = %s FOR UPDATE"  # noqa: S608


def lock_rater(rater_id: int, *, leasing: bool = False) -> None:
    """Lock the rater's row for the rest of the transaction (PostgreSQL; SQLite's transactions already hold
    the database's write lock). With `leasing` (only in the transaction that hands out a lease), the
    transaction also takes LEASE_TRANSACTION_SETTINGS."""
    if _postgres():
        what = LEASE_TRANSACTION_SETTINGS if leasing else R.id
        _fetchone(_SQL_LOCK_RATER.format(what), [rater_id])


class Lease(NamedTuple):
    id: int
    token: str
    comparison_id: int
    left_is_a: bool
    created_at: Any
    leased_until: Any
    view: RaterViewRow  # what the rater is shown of it, read in the same statement


# ORM: Assignment.objects.filter(rater=rater, comparison__campaign=campaign, status=LEASED,
#      leased_until__gt=now).order_by("created_at").values_list(<the Lease fields>, <_RATER_VIEW_COLUMNS>)[:1]
_SQL_CURRENT_LEASE = (
    f"SELECT a.{A.id}, a.{A.token}, a.{A.comparison}, a.{A.left_is_a}, a.{A.created_at}, a.{A.leased_until}, "  # noqa: S608
    f"{_RATER_VIEW_COLUMNS} FROM {A} a {_WITH_CAMPAIGN} "
    f"WHERE a.{A.rater} = %(rater)s AND c.{C.campaign} = %(campaign)s AND a.{A.status} = %(leased)s "
    f"AND a.{A.leased_until} > %(now)s ORDER BY a.{A.created_at} LIMIT 1"
)


def current_lease(*, rater_id: int, campaign_id: int, now: datetime) -> Lease | None:
    """The rater's live unvoted lease in the campaign, if any (a voted or skipped assignment leaves the
    LEASED status in the transaction of its vote or skip), with what the rater is shown of it."""
    row = _fetchone(
        _SQL_CURRENT_LEASE, {"rater": rater_id, "campaign": campaign_id, "leased": _LEASED, "now": rows.db_time(now)}
    )
    return None if row is None else Lease._make([*row[:6], RaterViewRow(*row[6:])])


# ORM: Assignment.objects.filter(rater=rater, status=VOTED, comparison__campaign=campaign).count()
_SQL_VOTES_DONE = f"SELECT {_votes_done('%(rater)s', '%(campaign)s')}"  # noqa: S608


def votes_done(*, rater_id: int, campaign_id: int) -> int:
    """Votes this rater cast in this campaign: the one definition behind the per-rater cap and progress."""
    row = _fetchone(_SQL_VOTES_DONE, {"rater": rater_id, "campaign": campaign_id})
    return int(row[0]) if row else 0


class Candidate(NamedTuple):
    id: int
    load: int
    votes_count: int
    # Whether the window holds the best comparisons of the campaign (`_CONCLUSIVE`); True for the whole campaign.
    conclusive: bool


# The eligible comparisons: the campaign's (real or gold) pairs under k votes this rater has not been given.
_ELIGIBLE = (
    f"c.{C.campaign} = %(campaign)s AND c.{C.is_attention_check} = %(gold)s AND c.{C.votes_count} < %(k)s "  # noqa: S608
    # One probe of the (rater, comparison) unique index per row the window reads: reading the rater's whole
    # history instead (NOT IN, hashed) cost more with every pair they had seen (0.4 ms more at 600). An OFFSET
    # keeps the subquery a probe: as an anti-join PostgreSQL scanned all of that index for the rater.
    f"AND NOT EXISTS (SELECT 1 FROM {A} s WHERE s.{A.comparison} = c.{C.id} AND s.{A.rater} = %(rater)s "
    "LIMIT 1 OFFSET 0)"
)


# The campaign's id range (two probes of the (campaign, id) index) and its fewest votes under k (one probe of
# the vote-order index).
_SPAN = (
    f"span AS (SELECT MIN({C.id}) AS lo, MAX({C.id}) AS hi, "  # noqa: S608
    f"(SELECT f.{C.votes_count} FROM {C} f WHERE f.{C.campaign} = %(campaign)s "
    f"AND f.{C.is_attention_check} = %(gold)s AND f.{C.votes_count} < %(k)s ORDER BY f.{C.votes_count} LIMIT 1) "
    f"AS fewest FROM {C} WHERE {C.campaign} = %(campaign)s)"
)
# The random point among the campaign's ids where a pick starts reading the comparisons with the fewest votes.
_PIVOT = "(SELECT lo + CAST(%(start)s * (hi - lo + 1) AS BIGINT) FROM span)"
_FEWEST = "(SELECT fewest FROM span)"


def _window_part(name: str, where: str, order: str, tried: str, limit: str) -> str:
    """One part of the window: a CTE `name` of eligible comparisons read in `order`, at most `limit` of them.
    MATERIALIZED: each part is read to its end before the next one's limit, which counts it, is known."""
    return (
        f"{name} AS MATERIALIZED (SELECT c.{C.id}, c.{C.votes_count} FROM {C} c "  # noqa: S608
        f"WHERE {_ELIGIBLE}{tried} AND {where} ORDER BY {order} LIMIT {limit})"
    )


# Adaptive routing: only the comparisons of one pair of models (the models of responses A and B).
# ORM: .filter(response_a__model_id=model_a, response_b__model_id=model_b)
_ONE_PAIR = (
    f" AND c.{C.response_a} IN (SELECT r.{T.id} FROM {T} r WHERE r.{T.model} = %(model_a)s)"  # noqa: S608
    f" AND c.{C.response_b} IN (SELECT r.{T.id} FROM {T} r WHERE r.{T.model} = %(model_b)s)"
)


# Whether a full window of ranked comparisons `x` (id, load, votes_count) holds the least loaded eligible
# comparisons of the whole campaign: it is not full (nothing is left outside it), or its lowest load is at most
# the most votes in it (every comparison outside it has at least as many votes as each one in it, hence at least
# that load). Its lowest load is then under k (votes of eligible comparisons are), so it holds a pick. A
# window that only holds comparisons other raters lease is not conclusive: a wider one is ranked.
# ORM: Window(Count("*")) < window or Window(Min("load")) <= Window(Max("votes_count"))
_CONCLUSIVE = "(COUNT(*) OVER () < %(window)s OR MIN(x.load) OVER () <= MAX(x.votes_count) OVER ()) AS conclusive"


@functools.lru_cache(maxsize=64)  # a handful of shapes; building one cost 0.1 ms of every pick's CPU
def _rank_sql(n_tried: int, windowed: bool, one_pair: bool = False) -> str:
    tried = "".join(f" AND c.{C.id} <> %(tried_{i})s" for i in range(n_tried)) + (_ONE_PAIR if one_pair else "")

    def ranked(alias: str) -> str:
        return f"SELECT {alias}.{C.id}, {_load(alias)} AS load, {alias}.{C.votes_count}"  # noqa: S608

    if not windowed:
        return f"{ranked('c')}, TRUE FROM {C} c WHERE {_ELIGIBLE}{tried} ORDER BY load, RANDOM()"  # noqa: S608
    # With the number of votes fixed, the index seeks straight to the pivot; over a range of numbers it would
    # read every entry below the pivot first (most of a 30,000-pair campaign when the pivot is high). Each part
    # reads only what the parts before it left of the window: reading a full window for each, then keeping the
    # first, probed up to three times as many comparisons (the seen check, then the load) under load.
    fewest = f"c.{C.votes_count} = {_FEWEST}"
    first, second = "(SELECT COUNT(*) FROM p0)", "(SELECT COUNT(*) FROM p1)"
    parts = (
        _window_part("p0", f"{fewest} AND c.{C.id} >= {_PIVOT}", f"c.{C.id}", tried, "%(window)s"),
        _window_part("p1", f"{fewest} AND c.{C.id} < {_PIVOT}", f"c.{C.id}", tried, f"%(window)s - {first}"),
        _window_part(
            "p2", f"c.{C.votes_count} > {_FEWEST}", f"c.{C.votes_count}, c.{C.id}", tried,
            f"%(window)s - {first} - {second}",
        ),
    )  # fmt: skip
    # The window's rows with their load are a CTE of their own (MATERIALIZED): as a subquery, PostgreSQL pulled
    # it up and counted each row's live leases twice, once for the row and once for `_CONCLUSIVE`.
    return (
        f"WITH {_SPAN}, {', '.join(parts)}, x AS MATERIALIZED ({ranked('w')} FROM "  # noqa: S608 - names from _meta
        "(SELECT * FROM p0 UNION ALL SELECT * FROM p1 UNION ALL SELECT * FROM p2) w) "
        f"SELECT x.*, {_CONCLUSIVE} FROM x ORDER BY load, RANDOM()"
    )


def rank_candidates(
    *,
    campaign_id: int,
    rater_id: int,
    k: int,
    now: datetime,
    start: float,
    window: int | None,
    gold: bool = False,
    tried: Collection[int] = (),
    pair: tuple[int, int] | None = None,
) -> list[Candidate]:
    """The campaign's comparisons this rater may be given next, fewest votes plus live leases first, ties at
    random; rows at k (votes plus leases) are returned too, last, for the caller to drop.

    Only a window is ranked, not the whole campaign: the first `window` eligible comparisons (under k,
    unseen by this rater, not in `tried`) in the order of their votes; among those with the fewest votes of
    the campaign, from a random point `start` (0 ≤ start < 1 of the campaign's id range) onwards, wrapping
    around, then those with more votes by id. Each part is an index scan of (campaign, is_attention_check,
    votes_count, id) that seeks to its first row and stops once the window is full, so a request costs the same
    on a campaign of 30,000 pairs as on one of 30, wherever the random point falls. Every comparison outside the
    window has at least as many votes as the window's last row, hence at least that load: when the best
    load in a full window is above that, the caller asks again with a wider window (`window=None` ranks
    every eligible comparison). `pair` (model ids of responses A and B) keeps to that pair's comparisons.

    ORM: Comparison.objects.filter(campaign=campaign, is_attention_check=gold, votes_count__lt=k)
         .exclude(pk__in=Assignment.objects.filter(rater=rater).values("comparison")).exclude(pk__in=tried)
         .order_by("votes_count", <id from start, wrapping, at the fewest votes; else id>)[:window]
         → .annotate(load=<_load>).order_by("load", "?")"""
    params: dict[str, Any] = {
        "campaign": campaign_id, "gold": gold, "k": k, "rater": rater_id, "start": start, "window": window,
        "leased": _LEASED, "now": rows.db_time(now),
    }  # fmt: skip
    ordered = sorted(tried)
    params.update({f"tried_{i}": pk for i, pk in enumerate(ordered)})
    if pair is not None:
        params.update(model_a=pair[0], model_b=pair[1])
    sql = _rank_sql(len(ordered), window is not None, one_pair=pair is not None)
    return [Candidate(pk, load, votes, bool(conclusive)) for pk, load, votes, conclusive in _fetchall(sql, params)]


# ORM: Comparison.objects.filter(pk__in=ids).select_for_update(skip_locked=True, of=("self",))
#      .order_by(<position in ids>).values_list("pk")[:1]
_SQL_LOCK_FIRST_FREE = (
    f"SELECT c.{C.id} FROM {C} c INNER JOIN unnest(%s::bigint[]) WITH ORDINALITY AS t(id, n) "  # noqa: S608
    f"ON c.{C.id} = t.id ORDER BY t.n LIMIT 1 FOR UPDATE OF c SKIP LOCKED"
)
# ORM: Comparison.objects.select_for_update().filter(pk=comparison_id).values_list("pk")
_SQL_LOCK_COMPARISON = f"SELECT {C.id} FROM {C} WHERE {C.id} = %s FOR UPDATE"  # noqa: S608


def lock_first_free(comparison_ids: Sequence[int]) -> int | None:
    """PostgreSQL: of these comparisons (best first), lock the first no other transaction holds; None when
    every one is held."""
    row = _fetchone(_SQL_LOCK_FIRST_FREE, [list(comparison_ids)])
    return None if row is None else row[0]


def lock_comparison(comparison_id: int) -> None:
    """PostgreSQL: lock one comparison, waiting for the transaction that holds it."""
    _fetchone(_SQL_LOCK_COMPARISON, [comparison_id])


# ORM: held = Assignment.objects.filter(comparison_id=comparison_id).filter(Q(status=VOTED) | Q(status=LEASED,
#          leased_until__gt=now)); lead = held.filter(left_is_a=True).count() - held.filter(left_is_a=False).count()
#      if Comparison.objects.filter(pk=comparison_id).annotate(load=<_load>).filter(load__lt=k).exists():
#          Assignment.objects.create(token=…, comparison_id=…, rater_id=…,
#                                    left_is_a=lead < 0 if lead else coin, status=LEASED, created_at=now,
#                                    leased_until=…, routing_probability=…)
# in one statement, so the load and the orders are counted in the INSERT's own snapshot (under the
# comparison's lock): each comparison's votes split evenly between the two left/right orders.
_SQL_INSERT_LEASE = (
    f"INSERT INTO {A} ({A.token}, {A.comparison}, {A.rater}, {A.left_is_a}, {A.status}, {A.created_at}, "  # noqa: S608
    f"{A.leased_until}, {A.closed_at}, {A.routing_probability}) "
    f"SELECT %(token)s, c.{C.id}, %(rater)s, "
    f"CASE WHEN o.lead < 0 THEN TRUE WHEN o.lead > 0 THEN FALSE ELSE %(coin)s END, "
    f"%(status)s, %(now)s, %(until)s, NULL, %(probability)s FROM {C} c CROSS JOIN "
    f"(SELECT COALESCE(SUM(CASE WHEN s.{A.left_is_a} THEN 1 ELSE -1 END), 0) AS lead FROM {A} s "
    f"WHERE s.{A.comparison} = %(comparison)s AND (s.{A.status} = %(voted)s "
    f"OR (s.{A.status} = %(leased)s AND s.{A.leased_until} > %(now)s))) o "
    f"WHERE c.{C.id} = %(comparison)s AND {_load('c')} < %(k)s "
    f"RETURNING {A.id}, {A.token}, {A.comparison}, {A.rater}, {A.left_is_a}"
)
# PostgreSQL returns what the rater is shown of the new lease from the INSERT itself (one round trip, not two).
_SQL_INSERT_LEASE_VIEW = (
    f"WITH a AS ({_SQL_INSERT_LEASE}) SELECT a.{A.id}, {_RATER_VIEW_COLUMNS} FROM a {_WITH_CAMPAIGN}"  # noqa: S608
)


class NewLease(NamedTuple):
    id: int
    left_is_a: bool
    view: RaterViewRow


def insert_lease_under_quota(
    *,
    token: str,
    comparison_id: int,
    rater_id: int,
    coin: bool,
    now: datetime,
    leased_until: datetime,
    k: int,
    routing_probability: float | None = None,
) -> NewLease | None:
    """Lease the comparison to the rater only while its votes plus live leases stay under k, in the left/right
    order with fewer votes plus live leases on it (`coin` when they are even): the new assignment's id, its
    `left_is_a` and what the rater is shown of it, or None when the comparison is full. `routing_probability`
    is stored with it."""
    params = {
        "token": token, "comparison": comparison_id, "rater": rater_id, "coin": coin, "status": _LEASED,
        "leased": _LEASED, "voted": _VOTED, "probability": routing_probability,
        "now": rows.db_time(now), "until": rows.db_time(leased_until), "k": k,
    }  # fmt: skip
    if _postgres():
        row = _fetchone(_SQL_INSERT_LEASE_VIEW, params)
        if row is None:
            return None
        view = RaterViewRow(*row[1:])
        return NewLease(id=row[0], left_is_a=bool(view.left_is_a), view=view)
    inserted = _fetchone(_SQL_INSERT_LEASE, params)  # SQLite has no INSERT in a WITH clause
    if inserted is None:
        return None
    shown = rater_view_row(inserted[0])
    assert shown is not None  # inserted by this transaction
    return NewLease(id=inserted[0], left_is_a=bool(inserted[-1]), view=shown)


# ---------------------------------------------------------------- next pair in one round trip (PostgreSQL)

# The usual pick, sequenced by the database: the statements above, in the order `services.rating` runs them
# (lock the rater, check the cap, the current lease, rank a window, lock the first free candidate, lease it),
# made into a PL/pgSQL function so that a pair costs one round trip instead of seven (BEGIN and COMMIT
# included). Each of its statements is one of the constants above with its parameters named as the function's
# variables, and gets a snapshot of its own as it would in its own round trip (READ COMMITTED). The function
# decides nothing the services do not: whenever it cannot lease the plain way (the rater is at the cap, the
# windows are not conclusive, every candidate is held by another transaction, the pair filled) it returns no
# row, having written nothing, and the caller takes the long way, which decides.
#
# It is a temporary function (pg_temp), created on a connection's first pick: no migration, and never older
# than the code. Only for connections that keep their session (`one_call_lease_enabled`).
_NEXT_LEASE_FUNCTION = "pg_temp.blindeval_next_lease"
# What the function returns (its output columns, with their types): the lease, then what the rater is shown of it.
_NEXT_LEASE_RETURNS = {
    "o_id": "bigint", "o_token": "text", "o_comparison": "bigint", "o_left_is_a": "boolean",
    "o_created_at": "timestamptz", "o_leased_until": "timestamptz", "o_view_token": "text",
    "o_view_left_is_a": "boolean", "o_instruction": "text", "o_input": "text", "o_text_a": "text",
    "o_text_b": "text", "o_votes_done": "bigint", "o_quota": "bigint", "o_render_mode": "text",
}  # fmt: skip
_NEXT_LEASE_OUT = tuple(_NEXT_LEASE_RETURNS)
_NEXT_LEASE_VARIABLES = {
    "rater": "p_rater", "campaign": "p_campaign", "k": "p_k", "now": "p_now", "until": "p_until",
    "leased": "p_leased", "voted": "p_voted", "status": "p_leased", "start": "p_start", "window": "v_window",
    "token": "p_token", "coin": "p_coin", "comparison": "v_free", "gold": "FALSE", "probability": "NULL",
}  # fmt: skip


# The function's parameters (p_<name>) with their types.
_LEASE_PARAMETERS = {
    "rater": "bigint", "campaign": "bigint", "limit": "bigint", "k": "integer", "now": "timestamptz",
    "until": "timestamptz", "start": "double precision", "windows": "integer[]", "to_lock": "integer",
    "token": "text", "coin": "boolean", "leased": "text", "voted": "text",
}  # fmt: skip


def _signature(columns: dict[str, str], prefix: str = "p_") -> str:
    """Names with their types, as a function's parameters (`p_<name>`) or, without the prefix, what it returns."""
    return ", ".join(f"{prefix}{name} {kind}" for name, kind in columns.items())


def _arguments(parameters: dict[str, str]) -> str:
    """The arguments of a call of a function with these parameters, bound by name (`%(name)s`)."""
    return ", ".join(f"%({name})s::{kind}" for name, kind in parameters.items())


def _into(names: Sequence[str]) -> str:
    return f" INTO {', '.join(names)}"


@functools.cache  # made on every new connection (in a transaction, for every pair): written out once
def _next_lease_function_sql() -> str:
    v = _NEXT_LEASE_VARIABLES
    view_out = _NEXT_LEASE_OUT[6:]
    return f"""CREATE OR REPLACE FUNCTION {_NEXT_LEASE_FUNCTION}({_signature(_LEASE_PARAMETERS)})
RETURNS TABLE({_signature(_NEXT_LEASE_RETURNS, prefix="")})
LANGUAGE plpgsql VOLATILE AS $lease$
DECLARE
    v_settings record;
    v_done bigint;
    v_window integer;
    v_ranked record;
    v_conclusive boolean;
    v_under bigint[] := '{{}}';
    v_free bigint;
BEGIN
    {_SQL_LOCK_RATER.format(LEASE_TRANSACTION_SETTINGS) % ("p_rater",)}{_into(["v_settings"])};
    IF p_limit IS NOT NULL THEN
        {_SQL_VOTES_DONE % v}{_into(["v_done"])};
        IF v_done >= p_limit THEN RETURN; END IF;
    END IF;
    {_SQL_CURRENT_LEASE % v}{_into(_NEXT_LEASE_OUT)};
    IF FOUND THEN RETURN NEXT; RETURN; END IF;
    FOREACH v_window IN ARRAY p_windows LOOP
        v_conclusive := NULL;
        v_under := '{{}}';
        FOR v_ranked IN {_rank_sql(0, True) % v} LOOP
            v_conclusive := COALESCE(v_conclusive, v_ranked.conclusive);
            IF v_ranked.load < p_k THEN v_under := v_under || v_ranked.{C.id}; END IF;
        END LOOP;
        EXIT WHEN v_conclusive IS NOT FALSE;
    END LOOP;
    IF v_conclusive IS NOT TRUE OR cardinality(v_under) = 0 THEN RETURN; END IF;
    {_SQL_LOCK_FIRST_FREE % ("(v_under[1:p_to_lock])",)}{_into(["v_free"])};
    IF NOT FOUND THEN RETURN; END IF;
    {_SQL_INSERT_LEASE_VIEW % v}{_into(["o_id", *view_out])};
    IF NOT FOUND THEN RETURN; END IF;
    o_token := p_token;
    o_comparison := v_free;
    o_left_is_a := o_view_left_is_a;
    o_created_at := p_now;
    o_leased_until := p_until;
    RETURN NEXT;
END
$lease$"""


_SQL_NEXT_LEASE = f"SELECT * FROM {_NEXT_LEASE_FUNCTION}({_arguments(_LEASE_PARAMETERS)})"  # noqa: S608
# The connections (psycopg's) on which the functions exist.
_HAS_NEXT_LEASE: weakref.WeakSet[Any] = weakref.WeakSet()
# Set when the database refused to make the function (a role without the TEMPORARY privilege on the database):
# the long way serves every pair from then on.
_FUNCTION_REFUSED = False
logger = logging.getLogger(__name__)


def one_call_lease_enabled() -> bool:
    """Whether `next_lease_in_one_call` may be used: on PostgreSQL when connections keep their session from one
    request to the next (kept open, DATABASE_CONN_MAX_AGE, and not behind a transaction-mode pooler, which
    DATABASE_PREPARED_STATEMENTS=0 declares), since the function lives in the session."""
    return (
        _postgres()
        and not _FUNCTION_REFUSED
        and _connections_kept()
        and bool(connection.settings_dict["OPTIONS"].get("server_side_binding"))
    )


def _connections_kept() -> bool:
    # With connections closed after every request, making the function on each one cost 1.7 ms, more than the
    # round trips it saves.
    return connection.settings_dict["CONN_MAX_AGE"] != 0


class LeaseRequest(NamedTuple):
    """A plain pick for `next_lease_in_one_call`: the rater's current lease in the campaign or, when they hold
    none, a new lease on the first comparison of the first conclusive window of `windows`, ranked in turn
    (`rank_candidates`), that no other transaction holds, among the first `to_lock`, made as
    `insert_lease_under_quota` makes one (token `token`, counterbalanced with `coin`, until `leased_until`),
    unless the rater has cast `limit` votes in the campaign."""

    rater_id: int
    campaign_id: int
    limit: int | None
    k: int
    now: datetime
    leased_until: datetime
    start: float
    windows: Sequence[int]
    to_lock: int
    token: str
    coin: bool


def _lease_params(lease: LeaseRequest) -> dict[str, Any]:
    return {
        "rater": lease.rater_id, "campaign": lease.campaign_id, "limit": lease.limit, "k": lease.k,
        "now": rows.db_time(lease.now), "until": rows.db_time(lease.leased_until), "start": lease.start,
        "windows": _int_array(lease.windows), "to_lock": lease.to_lock, "token": lease.token, "coin": lease.coin,
        "leased": _LEASED, "voted": _VOTED,
    }  # fmt: skip


def _int_array(values: Sequence[int]) -> str:
    """An integer array as PostgreSQL writes it (`{16,64}`), for a parameter cast to `integer[]`: psycopg looks
    through a Python list to choose how to send it on every call, 2% of gunicorn's time per vote."""
    return "{" + ",".join(str(int(value)) for value in values) + "}"


def _lease_from(row: Sequence[Any]) -> Lease:
    return Lease._make([*row[:6], RaterViewRow(*row[6:])])


def next_lease_in_one_call(lease: LeaseRequest) -> Lease | None:
    """PostgreSQL, outside a transaction: the pick `lease` asks for, in one round trip. None when that takes a
    decision the function leaves to the caller (see `_next_lease_function_sql`); nothing is written then."""
    row = _fetchone_from_session_functions(_SQL_NEXT_LEASE, _lease_params(lease))
    return None if row is None else _lease_from(row)


def _fetchone_from_session_functions(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """Run `sql`, which calls this module's temporary functions, making them first where this session lacks
    them; None when the database refuses to make them (the caller then takes the long way)."""
    connection.ensure_connection()
    # In a transaction the functions may be rolled back with it: made again each time (tests, mostly).
    must_make = connection.in_atomic_block or connection.connection not in _HAS_NEXT_LEASE
    if must_make and not _create_next_lease_function():
        return None
    try:
        return _fetchone(sql, params)
    except ProgrammingError as exc:
        lost = (psycopg.errors.UndefinedFunction, psycopg.errors.InvalidSchemaName)  # a function, or pg_temp
        if not isinstance(exc.__cause__, lost) or connection.in_atomic_block:
            raise
    if not _create_next_lease_function():  # the session lost them (DISCARD TEMP, a server-side reset)
        return None
    return _fetchone(sql, params)


def _create_next_lease_function() -> bool:
    """Make the functions in this session; False when the database refuses (logged once; every pair is then
    served the long way). In a transaction, a savepoint keeps a refusal from aborting it."""
    global _FUNCTION_REFUSED
    try:
        savepoint = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
        with savepoint, connection.cursor() as cursor:
            cursor.execute(_next_lease_function_sql())
            cursor.execute(_vote_then_lease_function_sql())
    except ProgrammingError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.InsufficientPrivilege):
            raise
        if not _FUNCTION_REFUSED:
            logger.warning(
                "The database refused a temporary function (%s); raters' pairs are served without it, in more "
                "round trips. Grant the role TEMPORARY on the database to serve each pair in one.",
                exc,
            )
        _FUNCTION_REFUSED = True
        return False
    if not connection.in_atomic_block:  # committed: it lasts as long as the session
        _HAS_NEXT_LEASE.add(connection.connection)
    return True


# ORM: Comparison.objects.filter(pk=comparison_id).annotate(load=<_load, excluding assignment>)
#      .values_list("load", flat=True).get()
_SQL_LOAD_OF_OTHERS = f"SELECT {_load('c', excluding_assignment=True)} FROM {C} c WHERE c.{C.id} = %(comparison)s"  # noqa: S608


def load_of_others(*, comparison_id: int, assignment_id: int, now: datetime) -> int:
    """Votes plus other assignments' live leases of one comparison (call it with the comparison locked)."""
    params = {"comparison": comparison_id, "assignment": assignment_id, "leased": _LEASED, "now": rows.db_time(now)}
    row = _fetchone(_SQL_LOAD_OF_OTHERS, params)
    return int(row[0]) if row else 0


# ORM: Assignment.objects.filter(comparison_id=comparison_id, left_is_a=left_is_a).filter(Q(status=VOTED)
#      | Q(status=LEASED, leased_until__gt=now)).exclude(pk=assignment_id).count()
_SQL_ORDER_LOAD_OF_OTHERS = (
    f"SELECT COUNT(*) FROM {A} s WHERE s.{A.comparison} = %(comparison)s AND s.{A.id} <> %(assignment)s "  # noqa: S608
    f"AND s.{A.left_is_a} = %(left_is_a)s AND (s.{A.status} = %(voted)s "
    f"OR (s.{A.status} = %(leased)s AND s.{A.leased_until} > %(now)s))"
)


def order_load_of_others(*, comparison_id: int, assignment_id: int, left_is_a: bool, now: datetime) -> int:
    """Votes plus other assignments' live leases of one comparison in one left/right order (call it with the
    comparison locked)."""
    params = {"comparison": comparison_id, "assignment": assignment_id, "left_is_a": left_is_a,
              "voted": _VOTED, "leased": _LEASED, "now": rows.db_time(now)}  # fmt: skip
    row = _fetchone(_SQL_ORDER_LOAD_OF_OTHERS, params)
    return int(row[0]) if row else 0


# ---------------------------------------------------------------- votes

# ORM: Assignment.objects.select_related("comparison__campaign").select_for_update(of=("self", "comparison"))
#      .filter(token=token, rater=rater).annotate(model_a=…response_a__model, model_b=…response_b__model,
#      votes_done=<_votes_done> when the campaign has comparisons_per_rater (else None),
#      last_vote_at=Max(rater's votes' submitted_at),
#      named_member=Count(rater.campaigns with this campaign)).defer("comparison__campaign__identity_leaks").first()
_SQL_VOTE_TARGET = (
    f"SELECT a.{A.id}, a.{A.status}, a.{A.left_is_a}, a.{A.created_at}, a.{A.leased_until}, "  # noqa: S608
    f"a.{A.comparison}, c.{C.is_attention_check}, c.{C.response_a}, c.{C.response_b}, "
    f"(SELECT r.{T.model} FROM {T} r WHERE r.{T.id} = c.{C.response_a}), "
    f"(SELECT r.{T.model} FROM {T} r WHERE r.{T.id} = c.{C.response_b}), "
    # The rater's votes in this campaign, counted only when the campaign caps them (the count grows with every
    # vote the rater cast there), when their last vote anywhere was cast (a vote's time runs from the later of
    # serving and that), and whether a named rater is still given this campaign.
    f"CASE WHEN g.{G.comparisons_per_rater} IS NULL THEN NULL "
    f"ELSE {_votes_done(f'a.{A.rater}', f'c.{C.campaign}')} END, "
    f"(SELECT MAX(v.{V.submitted_at}) FROM {V} v WHERE v.{V.rater} = a.{A.rater}), "
    f"(SELECT COUNT(*) FROM {RC} m WHERE m.{RC.rater} = a.{A.rater} AND m.{RC.campaign} = c.{C.campaign}), "
    f"{_CAMPAIGN_COLUMNS} "
    f"FROM {A} a INNER JOIN {C} c ON c.{C.id} = a.{A.comparison} INNER JOIN {G} g ON g.{G.id} = c.{C.campaign} "
    f"WHERE a.{A.token} = %(token)s AND a.{A.rater} = %(rater)s"
)
_LOCK_TARGET = " FOR UPDATE OF a, c"


class VoteTarget(NamedTuple):
    """The assignment a vote is for, with what the vote needs of its comparison and campaign."""

    id: int
    status: str
    left_is_a: bool
    created_at: datetime
    leased_until: datetime
    comparison_id: int
    is_attention_check: bool
    response_a_id: int
    response_b_id: int
    model_a_id: int
    model_b_id: int
    votes_done: int | None  # None when the campaign has no per-rater cap (not counted then)
    last_vote_at: datetime | None
    named_member: bool
    campaign: Campaign


def vote_target(*, token: str, rater_id: int, lock: bool = True) -> VoteTarget | None:
    """The rater's assignment with this token, its comparison and campaign. None when the token is unknown or
    another rater's. With `lock`, on PostgreSQL, the assignment and its comparison stay locked (one vote per
    assignment, the comparison's quota) until the end of the transaction; without, it is a plain read, for a
    vote then written by `write_vote` with `live_after`, which takes the locks itself. A read without locks
    takes what the request's session statement read for this token and rater, if it did (once)."""
    read = _vote_target_read.get()
    if read is not None:
        _vote_target_read.set(None)
        if not lock and read[:2] == (token, rater_id):
            return read[2]
    sql = _SQL_VOTE_TARGET + (_LOCK_TARGET if lock and _postgres() else "")
    row = _fetchone(sql, {"token": token, "rater": rater_id})
    return None if row is None else _vote_target_from(row)


def _vote_target_from(row: tuple[Any, ...]) -> VoteTarget:
    head = 14
    (pk, status, left_is_a, created_at, leased_until, comparison_id, is_check, response_a_id, response_b_id,
     model_a_id, model_b_id, done, last_vote_at, named_member) = row[:head]  # fmt: skip
    return VoteTarget(
        id=pk, status=status, left_is_a=bool(left_is_a), created_at=rows.aware(created_at),
        leased_until=rows.aware(leased_until), comparison_id=comparison_id, is_attention_check=bool(is_check),
        response_a_id=response_a_id, response_b_id=response_b_id, model_a_id=model_a_id, model_b_id=model_b_id,
        votes_done=None if done is None else int(done),
        last_vote_at=None if last_vote_at is None else rows.aware(last_vote_at),
        named_member=bool(named_member), campaign=rows.instance_from_row(Campaign, row[head:], omit=_CAMPAIGN_OMIT),
    )  # fmt: skip


# A vote's request names its assignment: its session statement reads the assignment too (`session_with_user`),
# one round trip fewer per vote. Context variables: one per thread, set and cleared around each request.
_vote_token_wanted: ContextVar[str | None] = ContextVar("vote_token_wanted", default=None)
_vote_target_read: ContextVar[tuple[str, int, VoteTarget | None] | None] = ContextVar("vote_target_read", default=None)


def vote_target_with_session(token: str | None) -> None:
    """From now on in this request (this thread), a session read (`session_with_user`) also reads the signed-in
    rater's assignment `token` as `vote_target` reads it without locks, and the first such `vote_target` call
    for that token and rater takes it instead of a round trip of its own. None ends it, and drops what was
    read."""
    _vote_token_wanted.set(token)
    _vote_target_read.set(None)


_VOTE_VALUES = ("assignment", "choice", "winner_response", "winner_model", "rationale", "seconds", "submitted_at",
                "attention_failed", "identity_reported")  # fmt: skip
# What a vote copies from its assignment, and then from its comparison (see `Vote`): taken from their rows by the
# INSERT itself.
_VOTE_COPIED = ("comparison", "rater", "left_is_a", "routing_probability")
_VOTE_COPIED_ALL = (*_VOTE_COPIED, "campaign")


# A vote's three writes, each with `guard` appended to its WHERE clause (see `_SQL_VOTE_WRITE_IF_HELD`).
# ORM: assignment = Assignment.objects.select_related("comparison").get(pk=assignment_id)
#      Vote.objects.create(assignment_id=…, choice=…, winner_response_id=…, winner_model_id=…, rationale=…,
#                          seconds=…, submitted_at=now, attention_failed=…, identity_reported=…,
#                          comparison_id=assignment.comparison_id, rater_id=assignment.rater_id,
#                          left_is_a=assignment.left_is_a, routing_probability=assignment.routing_probability,
#                          campaign_id=assignment.comparison.campaign_id)
#      Assignment.objects.filter(pk=assignment_id).update(status=VOTED, closed_at=now)
#      Comparison.objects.filter(pk=comparison_id).update(votes_count=F("votes_count") + counted)
def _vote_writes(guard: str = "") -> tuple[str, str, str]:
    insert = (
        f"INSERT INTO {V} ({', '.join(getattr(V, f) for f in _VOTE_VALUES + _VOTE_COPIED_ALL)}) "  # noqa: S608
        f"SELECT {', '.join(f'%({f})s' for f in _VOTE_VALUES)}, "
        f"{', '.join(f'a.{getattr(A, f)}' for f in _VOTE_COPIED)}, c.{C.campaign} "
        f"FROM {A} a INNER JOIN {C} c ON c.{C.id} = a.{A.comparison} WHERE a.{A.id} = %(assignment)s{guard} "
        f"RETURNING {V.id}, {', '.join(getattr(V, f) for f in _VOTE_COPIED_ALL)}"
    )
    voted = (
        f"UPDATE {A} SET {A.status} = %(voted)s, {A.closed_at} = %(submitted_at)s "  # noqa: S608
        f"WHERE {A.id} = %(assignment)s{guard}"
    )
    counted = (
        f"UPDATE {C} SET {C.votes_count} = {C.votes_count} + %(counted)s "  # noqa: S608
        f"WHERE {C.id} = %(comparison)s{guard}"
    )
    return insert, voted, counted


_SQL_VOTE_INSERT, _SQL_VOTED, _SQL_COUNT_VOTE = _vote_writes()


def _in_one_statement(insert: str, voted: str, counted: str, *, first: str = "") -> str:
    """PostgreSQL: the three writes in one statement (one round trip instead of three), after the CTEs `first`."""
    return (
        f"WITH {first}vote AS ({insert}), voted AS ({voted}), counted AS ({counted}) "  # noqa: S608
        f"SELECT {V.id}, {', '.join(getattr(V, f) for f in _VOTE_COPIED_ALL)} FROM vote"
    )


_SQL_VOTE_WRITE = _in_one_statement(*_vote_writes())
# The same writes outside a transaction, made only when the assignment is still LEASED past `live_after` and
# neither it nor its comparison is held by another transaction, which they then wait for no longer than this
# statement: nothing a vote's decision rested on can change under it, and a lease that was live with time to
# spare when the caller read its clock cannot have expired and been counted out by a rival's lease since (that
# rival would have had to read its clock after `live_after`). Otherwise nothing is written and no row comes back.
# ORM: with transaction.atomic():
#          if (Assignment.objects.filter(pk=assignment_id, status=LEASED, leased_until__gt=live_after)
#              .select_for_update(skip_locked=True, of=("self", "comparison")).exists()): <the three writes>
_HELD = (
    f"held AS MATERIALIZED (SELECT a.{A.id} FROM {A} a INNER JOIN {C} c ON c.{C.id} = a.{A.comparison} "  # noqa: S608
    f"WHERE a.{A.id} = %(assignment)s AND a.{A.status} = %(leased)s AND a.{A.leased_until} > %(live_after)s "
    "FOR UPDATE OF a, c SKIP LOCKED), "
)
_SQL_VOTE_WRITE_IF_HELD = _in_one_statement(*_vote_writes(" AND EXISTS (SELECT 1 FROM held)"), first=_HELD)


def _attname(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field), name
    return field.attname


def _vote_params(values: dict[str, Any], *, comparison_id: int, counted: int) -> dict[str, Any]:
    params = {
        **{f: values[_attname(Vote, f)] for f in _VOTE_VALUES},
        "voted": _VOTED, "counted": counted, "comparison": comparison_id,
    }  # fmt: skip
    params["submitted_at"] = rows.db_time(values["submitted_at"])
    return params


def _vote_written(values: dict[str, Any], written: Sequence[Any]) -> Vote:
    """The vote `values` as stored, from the row its INSERT returned (its id, then what it copied)."""
    copied = {_attname(Vote, f): value for f, value in zip(_VOTE_COPIED_ALL, written[1:], strict=True)}
    return rows.instance(Vote, {**values, "id": written[0], **copied})


def write_vote(
    *, values: dict[str, Any], comparison_id: int, counted: int, live_after: datetime | None = None
) -> Vote | None:
    """Store a vote (`values`: {attname: value} of every Vote field but the id and those it copies from its
    assignment and comparison), mark its assignment VOTED at `submitted_at`, and add `counted` (0 for an
    attention check, else 1) to its comparison's votes. The three writes belong in the caller's transaction.

    With `live_after` (PostgreSQL, no locks taken before): the writes are made only while the assignment is
    LEASED until after `live_after` and no other transaction holds it or its comparison
    (`_SQL_VOTE_WRITE_IF_HELD`), else nothing is written and the answer is None."""
    params = _vote_params(values, comparison_id=comparison_id, counted=counted)
    with connection.cursor() as cursor:
        if live_after is not None:
            assert _postgres(), "SQLite has no row locks: a vote there is written under its transaction's lock"
            guarded = {**params, "leased": _LEASED, "live_after": rows.db_time(live_after)}
            cursor.execute(_SQL_VOTE_WRITE_IF_HELD, guarded)
            written = cursor.fetchone()
            if written is None:
                return None
        elif _postgres():
            cursor.execute(_SQL_VOTE_WRITE, params)
            written = cursor.fetchone()
        else:
            cursor.execute(_SQL_VOTE_INSERT, params)
            written = cursor.fetchone()
            cursor.execute(_SQL_VOTED, params)
            cursor.execute(_SQL_COUNT_VOTE, params)
    return _vote_written(values, written)


# ---------------------------------------------------------------- a vote and the next pair in one round trip

# `write_vote` with `live_after` and then, when it wrote, the rater's next pair as `next_lease_in_one_call`
# makes it: both in one statement, hence one transaction, so a rater's vote with their next pair costs one round
# trip where it cost two. The lease's transaction settings (`LEASE_TRANSACTION_SETTINGS`) would make the
# vote's commit stop waiting for the disk: the vote's durability is set back before the transaction ends, so a
# vote the rater is told was stored survives a crash as before. An error in the lease rolls the vote back with
# it, and the caller is answered with that error: nothing half-written, and the rater's retry is a new vote.
_VOTE_THEN_LEASE_FUNCTION = "pg_temp.blindeval_vote_then_lease"
_VOTE_PARAMETERS = {
    "assignment": "bigint", "choice": "text", "winner_response": "bigint", "winner_model": "bigint",
    "rationale": "text", "seconds": "double precision", "submitted_at": "timestamptz",
    "attention_failed": "boolean", "identity_reported": "boolean", "counted": "integer", "comparison": "bigint",
    "live_after": "timestamptz",
}  # fmt: skip
# What the vote function returns first: the vote's id, then what its INSERT copied (`_VOTE_COPIED_ALL`).
_VOTE_RETURNS = {
    "w_id": "bigint", "w_comparison": "bigint", "w_rater": "bigint", "w_left_is_a": "boolean",
    "w_routing_probability": "double precision", "w_campaign": "bigint",
}  # fmt: skip
_VOTE_OUT = tuple(_VOTE_RETURNS)


@functools.cache  # made on every new connection: written out once
def _vote_then_lease_function_sql() -> str:
    variables = {name: f"p_{name}" for name in (*_VOTE_PARAMETERS, *_LEASE_PARAMETERS)}
    return f"""CREATE OR REPLACE FUNCTION {_VOTE_THEN_LEASE_FUNCTION}(
    {_signature(_VOTE_PARAMETERS)}, {_signature(_LEASE_PARAMETERS)})
RETURNS TABLE({_signature(_VOTE_RETURNS, prefix="")}, {_signature(_NEXT_LEASE_RETURNS, prefix="")})
LANGUAGE plpgsql VOLATILE AS $vote$
DECLARE
    v_durability text;
BEGIN
    {_SQL_VOTE_WRITE_IF_HELD % variables}{_into(_VOTE_OUT)};
    IF NOT FOUND THEN RETURN; END IF;
    v_durability := current_setting('synchronous_commit');
    SELECT *{_into(_NEXT_LEASE_OUT)} FROM {_NEXT_LEASE_FUNCTION}({_arguments(_LEASE_PARAMETERS) % variables});
    PERFORM set_config('synchronous_commit', v_durability, true);
    RETURN NEXT;
END
$vote$"""  # noqa: S608 - names from _meta


_SQL_VOTE_THEN_LEASE = (
    f"SELECT * FROM {_VOTE_THEN_LEASE_FUNCTION}({_arguments(_VOTE_PARAMETERS)}, {_arguments(_LEASE_PARAMETERS)})"  # noqa: S608
)


def write_vote_then_lease(
    *, values: dict[str, Any], comparison_id: int, live_after: datetime, lease: LeaseRequest
) -> tuple[Vote, Lease | None] | None:
    """PostgreSQL, outside a transaction, in one round trip: `write_vote` with `live_after` (a counted vote)
    and, when it wrote, `next_lease_in_one_call(lease)`. None when the vote was not written (nothing was); else
    the vote and the lease, None where the function left the pick to the caller."""
    params = {
        **_vote_params(values, comparison_id=comparison_id, counted=1),
        **_lease_params(lease),
        "live_after": rows.db_time(live_after),
    }
    row = _fetchone_from_session_functions(_SQL_VOTE_THEN_LEASE, params)
    if row is None:
        return None
    vote = _vote_written(values, row[: len(_VOTE_OUT)])
    leased = row[len(_VOTE_OUT) :]
    return vote, None if leased[0] is None else _lease_from(leased)

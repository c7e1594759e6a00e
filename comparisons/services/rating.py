"""The rater loop: hand a rater their next pair (`assignment_next`), release it (`assignment_skip`) and
record exactly one vote (`vote_cast`).

Both hot paths run in one transaction. On PostgreSQL candidate comparisons are locked with
`SELECT … FOR UPDATE SKIP LOCKED` and the load is re-counted under the lock, so a comparison never holds
more than k votes plus live leases; on SQLite the settings open every transaction with BEGIN IMMEDIATE,
which serializes writers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from comparisons import rows
from comparisons.access import rater_can_rate
from comparisons.models import Assignment, Campaign, Comparison, Rater, Vote, new_token
from comparisons.routing import routing_draw, routing_plan
from comparisons.services.campaigns import campaign_stop_check_soon


class RatingError(Exception):
    """Base class of the errors a rater's request can meet; `status` is the HTTP code views answer with."""

    status = 400


class NotFound(RatingError):
    status = 404


class Conflict(RatingError):
    status = 409


class Gone(RatingError):
    status = 410


class InvalidChoice(RatingError):
    status = 400


def _live_leases(now, *, exclude: Assignment | None = None):  # type: ignore[no-untyped-def]
    qs = Assignment.objects.filter(comparison=OuterRef("pk"), status=Assignment.Status.LEASED, leased_until__gt=now)
    if exclude is not None:
        qs = qs.exclude(pk=exclude.pk)
    return Coalesce(
        Subquery(qs.order_by().values("comparison").annotate(n=Count("pk")).values("n")[:1]),
        Value(0),
    )


def _load_of(comparison_id: int, now, *, exclude: Assignment | None = None) -> int:  # type: ignore[no-untyped-def]
    """Votes plus live leases of one comparison, read fresh (call it with the comparison locked)."""
    return (
        Comparison.objects.filter(pk=comparison_id)
        .annotate(load=F("votes_count") + _live_leases(now, exclude=exclude))
        .values_list("load", flat=True)
        .get()
    )


def _order_load(comparison_id: int, left_is_a: bool, now, *, exclude: Assignment) -> int:  # type: ignore[no-untyped-def]
    """Votes plus live leases of one comparison in one left/right order, besides ``exclude``."""
    live = Q(status=Assignment.Status.LEASED, leased_until__gt=now)
    return (
        Assignment.objects.filter(comparison_id=comparison_id, left_is_a=left_is_a)
        .filter(Q(status=Assignment.Status.VOTED) | live)
        .exclude(pk=exclude.pk)
        .count()
    )


def _campaign_load(campaign: Campaign, now) -> int:  # type: ignore[no-untyped-def]
    """Votes plus live leases on the campaign's real comparisons (what a vote budget is measured against)."""
    real = Comparison.objects.filter(campaign=campaign, is_attention_check=False)
    votes = real.aggregate(n=Coalesce(Sum("votes_count"), 0))["n"]
    live = Assignment.objects.filter(comparison__in=real, status=Assignment.Status.LEASED, leased_until__gt=now).count()
    return int(votes) + live


def rater_votes_done(*, rater: Rater, campaign: Campaign) -> int:
    return Vote.objects.filter(assignment__rater=rater, assignment__comparison__campaign=campaign).count()


def _lease(*, rater: Rater, comparison_id: int, campaign: Campaign, now) -> Assignment:  # type: ignore[no-untyped-def]
    return Assignment.objects.create(
        comparison_id=comparison_id,
        rater=rater,
        left_is_a=random.random() < 0.5,
        leased_until=now + timedelta(seconds=campaign.lease_seconds),
    )


# The rater loop (next → vote) is the hot path of a study. Its statements are written out in SQL that
# PostgreSQL and SQLite both run, instead of being compiled by the ORM on every request: that compiling
# cost more CPU than the database spent answering them. Values are always bound parameters.
_LEASED = Assignment.Status.LEASED.value
_SQL_LOCK_RATER = "SELECT set_config('synchronous_commit', 'off', true) FROM comparisons_rater WHERE id = %s FOR UPDATE"
_SQL_CURRENT = (
    "SELECT a.id, a.token, a.comparison_id, a.left_is_a, a.created_at, a.leased_until "
    "FROM comparisons_assignment a INNER JOIN comparisons_comparison c ON c.id = a.comparison_id "
    "WHERE a.rater_id = %s AND c.campaign_id = %s AND a.status = 'leased' AND a.leased_until > %s "
    "ORDER BY a.created_at LIMIT 1"
)
# The unseen comparisons under k, fewest votes plus live leases first, ties at random; parameters: now,
# campaign, is_attention_check (False), k, rater, then the ids already tried. The live leases of each row are
# one probe of the (comparison, status, leased_until) index and the rater's own assignments one hashed set,
# so any plan PostgreSQL caches for this prepared statement stays cheap. Rows at k (votes plus leases) sort
# last and are dropped by the caller, which keeps the lease count to one evaluation per row.
_SQL_CANDIDATE = (
    "SELECT c.id, c.votes_count + (SELECT COUNT(*) FROM comparisons_assignment l "
    "WHERE l.comparison_id = c.id AND l.status = 'leased' AND l.leased_until > %s) AS load "
    "FROM comparisons_comparison c "
    "WHERE c.campaign_id = %s AND c.is_attention_check = %s AND c.votes_count < %s "
    "AND c.id NOT IN (SELECT s.comparison_id FROM comparisons_assignment s WHERE s.rater_id = %s) "
)
_SQL_CANDIDATE_ORDER = "ORDER BY load, RANDOM()"
# A lease, inserted only while the comparison's votes plus live leases stay under k. Its left/right order is
# counterbalanced: the order with fewer votes plus live leases on this comparison (a coin when they are even),
# read in the same statement under the comparison's lock, so each comparison's k votes split evenly between the
# two orders (k odd: one more in one of them) whatever raters skip or abandon. Under adaptive routing the lease
# records the probability its pair of models had of being served. Parameters: token, rater, coin, created_at,
# leased_until, routing_probability, comparison, now, comparison, now, k.
_SQL_LEASE = (
    "INSERT INTO comparisons_assignment "
    "(token, comparison_id, rater_id, left_is_a, status, created_at, leased_until, closed_at, routing_probability) "
    "SELECT %s, c.id, %s, CASE WHEN o.lead < 0 THEN TRUE WHEN o.lead > 0 THEN FALSE ELSE %s END, 'leased', %s, %s, "
    "NULL, %s FROM comparisons_comparison c CROSS JOIN "
    "(SELECT COALESCE(SUM(CASE WHEN s.left_is_a THEN 1 ELSE -1 END), 0) AS lead FROM comparisons_assignment s "
    "WHERE s.comparison_id = %s AND (s.status = 'voted' OR (s.status = 'leased' AND s.leased_until > %s))) o "
    "WHERE c.id = %s AND (c.votes_count + (SELECT COUNT(*) FROM comparisons_assignment l "
    "WHERE l.comparison_id = c.id AND l.status = 'leased' AND l.leased_until > %s)) < %s RETURNING id, left_is_a"
)


def _assignment(
    *,
    pk: int,
    token: str,
    comparison_id: int,
    rater: Rater,
    left_is_a: Any,
    status: str,
    created_at: Any,
    leased_until: Any,
    routing_probability: float | None = None,
) -> Assignment:
    """An Assignment instance from values read (or written) by the statements below, without a query."""
    assignment: Assignment = rows.instance(
        Assignment,
        {"id": pk, "token": token, "comparison_id": comparison_id, "rater_id": rater.pk, "left_is_a": left_is_a,
         "status": status, "created_at": created_at, "leased_until": leased_until, "closed_at": None,
         "routing_probability": routing_probability},
    )  # fmt: skip
    Assignment.rater.field.set_cached_value(assignment, rater)
    return assignment


# Of the best candidates read without locks (in order), lock the first no other transaction holds.
_SQL_LOCK_FIRST_FREE = (
    "SELECT c.id FROM comparisons_comparison c "
    "INNER JOIN unnest(%s::bigint[]) WITH ORDINALITY AS t(id, n) ON c.id = t.id "
    "ORDER BY t.n LIMIT 1 FOR UPDATE OF c SKIP LOCKED"
)
_CANDIDATES_TO_LOCK = 16


# Adaptive routing: only the comparisons of one pair of models (model ids of response A and response B).
_SQL_CANDIDATE_PAIR = (
    "AND c.response_a_id IN (SELECT r.id FROM generation_response r WHERE r.model_id = %s) "
    "AND c.response_b_id IN (SELECT r.id FROM generation_response r WHERE r.model_id = %s) "
)


def _pick_candidate(
    cursor: Any,
    *,
    rater: Rater,
    campaign: Campaign,
    now: datetime,
    tried: set[int],
    pair: tuple[int, int] | None = None,
) -> int | None:
    """The unseen comparison under k with the fewest votes plus live leases (ties at random), locked.

    On PostgreSQL the candidates are read without locks, then the best one no other transaction holds is
    locked (SKIP LOCKED) by a statement of its own: locking in the ranking query itself made PostgreSQL
    re-check the whole ranking for every row a concurrent vote had just updated. When every candidate is
    held, wait for the best one rather than tell this rater there is nothing left: the attempt holds no other
    comparison's lock (see assignment_next), so the wait cannot deadlock. On SQLite the whole transaction
    already holds the database's write lock. ``pair`` (model ids of responses A and B) keeps to that pair's
    comparisons (adaptive routing)."""
    k = campaign.votes_per_comparison
    exclude = "AND c.id NOT IN (" + ", ".join(["%s"] * len(tried)) + ") " if tried else ""
    db_now = rows.db_time(now)
    params = [db_now, campaign.pk, False, k, rater.pk, *sorted(tried), *(pair or ())]
    postgres = connection.vendor == "postgresql"
    limit = _CANDIDATES_TO_LOCK if postgres else 1
    only_pair = _SQL_CANDIDATE_PAIR if pair is not None else ""
    cursor.execute(f"{_SQL_CANDIDATE}{exclude}{only_pair}{_SQL_CANDIDATE_ORDER} LIMIT {limit}", params)
    ranked = [pk for pk, load in cursor.fetchall() if load < k]
    if not ranked:
        return None
    if postgres:
        cursor.execute(_SQL_LOCK_FIRST_FREE, [ranked])
        row = cursor.fetchone()
        if row is not None:
            return row[0]
        cursor.execute("SELECT id FROM comparisons_comparison WHERE id = %s FOR UPDATE", [ranked[0]])
    return ranked[0]


def _pick_routed(
    cursor: Any, *, rater: Rater, campaign: Campaign, now: datetime, tried: set[int]
) -> tuple[int | None, float | None]:
    """Adaptive routing: draw a pair of models from the campaign's routing plan, then take that pair's comparison
    with the fewest votes plus live leases, as `_pick_candidate` does. A pair with nothing left for this rater
    is ruled out and the draw repeated among the others, so the probability returned is the pair's chance
    given the pairs ruled out (the plan renormalized), the weight its vote needs."""
    plan = routing_plan(campaign=campaign)
    exhausted: set[tuple[int, int]] = set()
    while (drawn := routing_draw(plan, exclude=exhausted)) is not None:
        pair, probability = drawn
        pk = _pick_candidate(cursor, rater=rater, campaign=campaign, now=now, tried=tried, pair=pair)
        if pk is not None:
            return pk, probability
        exhausted.add(pair)
    return None, None


class _PairFilled(Exception):  # noqa: N818 - control flow inside assignment_next, never raised to callers
    """The locked candidate filled up after it was ranked: roll back, which releases its lock, and try again."""

    def __init__(self, comparison_id: int) -> None:
        super().__init__(comparison_id)
        self.comparison_id = comparison_id


def assignment_next(*, rater: Rater, campaign: Campaign) -> Assignment | None:
    """The rater's next pair: their own live unvoted assignment if any, else a new lease on the comparison
    with the fewest votes plus live leases (below k) they have not seen, ties at random. None when nothing is
    left for this rater (campaign not open, per-rater limit reached, or every pair full or already seen).

    Each attempt is its own transaction and locks at most one comparison: when the locked one turns out to
    have filled since it was ranked, the attempt rolls back (releasing that lock) before the next one may wait
    for another. Holding one comparison's lock while waiting for another's deadlocks with a rival doing the
    same. Every failed attempt rules its comparison out, so the attempts end."""
    tried: set[int] = set()
    while True:
        try:
            with transaction.atomic():
                return _assignment_next_attempt(rater=rater, campaign=campaign, tried=tried)
        except _PairFilled as filled:
            tried.add(filled.comparison_id)


def _assignment_next_attempt(*, rater: Rater, campaign: Campaign, tried: set[int]) -> Assignment | None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Serialize one rater's concurrent requests (double clicks, two tabs): one lease at a time.
            # A lease is worth nothing after a database crash (the rater is simply served another pair),
            # so this transaction does not wait for its commit to reach the disk; votes do.
            cursor.execute(_SQL_LOCK_RATER, [rater.pk])
        now = timezone.now()
        # A voted or skipped assignment leaves the LEASED status in the same transaction as the vote/skip.
        cursor.execute(_SQL_CURRENT, [rater.pk, campaign.pk, rows.db_time(now)])
        row = cursor.fetchone()
        if row is not None:
            pk, token, comparison_id, left_is_a, created_at, leased_until = row
            return _assignment(
                pk=pk, token=token, comparison_id=comparison_id, rater=rater, left_is_a=left_is_a, status=_LEASED,
                created_at=created_at, leased_until=leased_until,
            )  # fmt: skip
        if not campaign.is_open:
            return None
        limit = campaign.comparisons_per_rater
        if limit is not None and rater_votes_done(rater=rater, campaign=campaign) >= limit:
            return None
        if campaign.vote_budget is not None and _campaign_load(campaign, now) >= campaign.vote_budget:
            return None  # the budget is spent, or will be by the pairs raters hold now

        if not tried and campaign.attention_check_rate > 0 and random.random() < campaign.attention_check_rate:
            unseen = ~Exists(Assignment.objects.filter(comparison=OuterRef("pk"), rater=rater))
            gold = (
                Comparison.objects.filter(campaign=campaign, is_attention_check=True)
                .filter(unseen)
                .order_by("?")
                .values_list("pk", flat=True)
                .first()
            )
            if gold is not None:
                return _lease(rater=rater, comparison_id=gold, campaign=campaign, now=now)

        probability: float | None = None
        if campaign.routing == Campaign.Routing.ADAPTIVE:
            pk, probability = _pick_routed(cursor, rater=rater, campaign=campaign, now=now, tried=tried)
        else:
            pk = _pick_candidate(cursor, rater=rater, campaign=campaign, now=now, tried=tried)
        if pk is None:
            return None
        # The candidates were ranked on an older snapshot: this INSERT re-counts the votes and live leases in a
        # statement of its own, under the comparison's lock, and leases only while they stay under k.
        k = campaign.votes_per_comparison
        token, coin = new_token(), random.random() < 0.5
        leased_until = now + timedelta(seconds=campaign.lease_seconds)
        db_now = rows.db_time(now)
        cursor.execute(
            _SQL_LEASE,
            [token, rater.pk, coin, db_now, rows.db_time(leased_until), probability, pk, db_now, pk, db_now, k],
        )
        row = cursor.fetchone()
        if row is None:
            raise _PairFilled(pk)
        return _assignment(
            pk=row[0], token=token, comparison_id=pk, rater=rater, left_is_a=bool(row[1]), status=_LEASED,
            created_at=now, leased_until=leased_until, routing_probability=probability,
        )  # fmt: skip


@transaction.atomic
def assignment_skip(*, rater: Rater, token: str) -> Assignment:
    """Release the lease of an unvoted assignment; the pair goes back to the pool for other raters, and this
    rater can no longer vote on it (a skip is final). A rater no longer given the campaign gets NotFound."""
    assignment = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("comparison__campaign")
        .filter(token=token, rater=rater)
        .order_by()
        .first()
    )
    if assignment is None or not rater_can_rate(rater=rater, campaign=assignment.comparison.campaign):
        raise NotFound("No such assignment for this rater.")
    if assignment.status == Assignment.Status.VOTED:
        raise Conflict("This pair has already been voted on; it cannot be skipped.")
    if assignment.status == Assignment.Status.LEASED:
        now = timezone.now()
        assignment.status = Assignment.Status.SKIPPED
        assignment.leased_until = now
        assignment.closed_at = now
        assignment.save(update_fields=["status", "leased_until", "closed_at"])
    return assignment


# ---------------------------------------------------------------- votes

API_CHOICES = {"A": Vote.Choice.LEFT, "B": Vote.Choice.RIGHT, "tie": Vote.Choice.TIE, "both_bad": Vote.Choice.BOTH_BAD}
MAX_RATIONALE_CHARS = 5000


# The assignment (with its comparison and campaign) a vote is for; scalar subqueries for the two models keep
# PostgreSQL's planning of this statement short.
_SQL_VOTE_TARGET = (
    "SELECT a.id, a.status, a.left_is_a, a.created_at, a.leased_until, a.comparison_id, "
    "c.is_attention_check, c.response_a_id, c.response_b_id, "
    "(SELECT r.model_id FROM generation_response r WHERE r.id = c.response_a_id), "
    "(SELECT r.model_id FROM generation_response r WHERE r.id = c.response_b_id), "
    "g.status, g.votes_per_comparison, g.slug, c.campaign_id, g.comparisons_per_rater, "
    # The rater's votes in this campaign (the per-rater cap), when their last vote anywhere was cast (a vote's
    # time runs from the later of serving and that), and whether a named rater is still given this campaign.
    "(SELECT COUNT(*) FROM comparisons_assignment v INNER JOIN comparisons_comparison vc ON vc.id = v.comparison_id "
    "WHERE v.rater_id = a.rater_id AND v.status = 'voted' AND vc.campaign_id = c.campaign_id), "
    "(SELECT MAX(v.closed_at) FROM comparisons_assignment v WHERE v.rater_id = a.rater_id AND v.status = 'voted'), "
    "(SELECT COUNT(*) FROM comparisons_rater_campaigns m WHERE m.rater_id = a.rater_id "
    "AND m.campaign_id = c.campaign_id) "
    "FROM comparisons_assignment a "
    "INNER JOIN comparisons_comparison c ON c.id = a.comparison_id "
    "INNER JOIN comparisons_campaign g ON g.id = c.campaign_id "
    "WHERE a.token = %s AND a.rater_id = %s"
)
_SQL_VOTE_INSERT = (
    "INSERT INTO comparisons_vote (assignment_id, choice, winner_response_id, winner_model_id, rationale, seconds, "
    "submitted_at, attention_failed, identity_reported) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)
_SQL_VOTED = "UPDATE comparisons_assignment SET status = 'voted', closed_at = %s WHERE id = %s"
_SQL_COUNT_VOTE = "UPDATE comparisons_comparison SET votes_count = votes_count + %s WHERE id = %s"
# PostgreSQL makes the three writes of a vote in one statement (one round trip instead of three).
_SQL_VOTE_WRITE = (
    f"WITH vote AS ({_SQL_VOTE_INSERT}), "  # noqa: S608 - constant SQL, values bound
    f"voted AS ({_SQL_VOTED}), "
    f"counted AS ({_SQL_COUNT_VOTE}) "
    "SELECT id FROM vote"
)


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


def _may_rate(rater: Rater, *, campaign_id: int, named_member: bool) -> bool:
    """`access.rater_can_rate` on values already read: invite raters their campaign, named ones those given."""
    if rater.campaign_id is not None:
        return rater.campaign_id == campaign_id
    return named_member


def _vote_seconds(now: datetime, *, served: datetime, last_vote: Any) -> float:
    """Seconds a vote had: from the later of serving the pair and the rater's previous vote.

    One person reads one pair at a time, so pairs served long ago (leases left to expire) and then voted in
    a burst get the short times of the burst and are flagged as too fast, like any other hurried vote."""
    start = served if last_vote is None else max(served, rows.aware(last_vote))
    return max(0.0, (now - start).total_seconds())


_SQL_LOCK_RATER_FOR_VOTE = "SELECT id FROM comparisons_rater WHERE id = %s FOR UPDATE"
_SQL_RATER_VOTES = (
    "SELECT COUNT(*) FROM comparisons_assignment v INNER JOIN comparisons_comparison vc ON vc.id = v.comparison_id "
    "WHERE v.rater_id = %s AND v.status = 'voted' AND vc.campaign_id = %s"
)


@dataclass
class VoteResult:
    vote: Vote
    created: bool


@transaction.atomic
def vote_cast(
    *, rater: Rater, token: str, choice: str, rationale: str = "", reveals_identity: bool = False
) -> VoteResult:
    """Record the rater's vote on an assignment, exactly once.

    ``reveals_identity`` is the rater's report that an answer of the pair tells who wrote it (it names its
    model or maker); the vote is stored with ``identity_reported`` set, and analyses can leave such pairs out.

    `choice` is the API's "A" | "B" | "tie" | "both_bad" (A = left on the rater's screen). The same
    choice again returns the stored vote (created=False); a different one raises Conflict; another
    rater's or an unknown token raises NotFound, and so does a token of a campaign the rater may no
    longer rate (a named rater removed from it). When the lease has expired the vote is still accepted
    while the comparison is under its quota of k votes plus other raters' live leases, otherwise Gone.
    Gone too: a closed campaign, a pair this rater skipped, and any vote past the campaign's per-rater
    cap. The vote's `seconds` run from the later of serving the pair and the rater's previous vote.
    """
    if choice not in API_CHOICES:
        raise InvalidChoice(f"'choice' must be one of {', '.join(API_CHOICES)}; got {choice!r}.")
    if not isinstance(rationale, str):
        raise InvalidChoice("'rationale' must be a string.")
    if len(rationale) > MAX_RATIONALE_CHARS:
        raise InvalidChoice(f"'rationale' is limited to {MAX_RATIONALE_CHARS} characters.")
    if "\x00" in rationale:  # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the INSERT
        raise InvalidChoice("'rationale' must not contain NUL (\\u0000) characters.")
    if not isinstance(reveals_identity, bool):
        raise InvalidChoice("'reveals_identity' must be true or false.")
    try:
        rationale.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON may carry half of a surrogate pair ("\ud800"), which no database stores
        raise InvalidChoice(
            f"'rationale' contains a lone surrogate (\\u{ord(rationale[exc.start]):04x}) at character {exc.start}, "
            "which is not text; send the whole character (both halves of the pair) or leave it out."
        ) from None
    screen_choice = API_CHOICES[choice].value
    # Lock the assignment (one vote per assignment) and its comparison (the quota) in one query; the
    # clock is read after the locks so a lease cannot expire between the check and a rival's lease.
    with connection.cursor() as cursor:
        lock = " FOR UPDATE OF a, c" if connection.vendor == "postgresql" else ""
        cursor.execute(_SQL_VOTE_TARGET + lock, [token, rater.pk])
        row = cursor.fetchone()
        if row is None:
            raise NotFound("No such assignment for this rater.")
        (pk, status, left_is_a, created_at, leased_until, comparison_id, is_check, response_a_id, response_b_id,
         model_a_id, model_b_id, campaign_status, k, campaign_slug, campaign_id, per_rater, votes_done,
         last_vote_at, named_member) = row  # fmt: skip
        if not _may_rate(rater, campaign_id=campaign_id, named_member=bool(named_member)):
            raise NotFound("No such assignment for this rater.")
        assignment = _assignment(
            pk=pk, token=token, comparison_id=comparison_id, rater=rater, left_is_a=left_is_a, status=status,
            created_at=created_at, leased_until=leased_until,
        )  # fmt: skip
        if status == Assignment.Status.VOTED:
            existing = Vote.objects.filter(assignment_id=pk).first()
            if existing is not None:
                Vote.assignment.field.set_cached_value(existing, assignment)
                if existing.choice == screen_choice:
                    return VoteResult(vote=existing, created=False)
                raise Conflict("This pair already has a different vote from you; a vote cannot be changed.")

        if campaign_status == Campaign.Status.CLOSED:
            raise Gone("This campaign is closed; the vote was not recorded.")
        if status == Assignment.Status.SKIPPED:
            raise Gone("You skipped this pair; a skipped pair cannot be voted on later.")
        if per_rater is not None and votes_done == per_rater - 1 and connection.vendor == "postgresql":
            # The last vote the cap allows: serialize it with the rater's other votes (two tabs voting expired
            # pairs at once) and count again under the lock. This transaction already holds its comparison,
            # which no other assignment of this rater can be on, so the extra lock cannot deadlock.
            cursor.execute(_SQL_LOCK_RATER_FOR_VOTE, [rater.pk])
            cursor.execute(_SQL_RATER_VOTES, [rater.pk, campaign_id])
            votes_done = cursor.fetchone()[0]
        if per_rater is not None and votes_done >= per_rater:
            raise Gone(
                f"You have judged the {per_rater} pair{_plural(per_rater)} this campaign asks of one rater; "
                "the vote was not recorded."
            )
        now = timezone.now()
        live = status == Assignment.Status.LEASED and assignment.leased_until > now
        full = not live and not is_check
        if full and (
            _load_of(comparison_id, now, exclude=assignment) >= k
            # Counterbalancing: an order holds at most half of the k votes (k odd: one more).
            or _order_load(comparison_id, bool(left_is_a), now, exclude=assignment) >= (k + 1) // 2
        ):
            raise Gone("Your time on this pair ran out and it has since been filled by other raters.")

        left, right = ((response_a_id, model_a_id), (response_b_id, model_b_id))[:: 1 if left_is_a else -1]
        winner_id, winner_model_id = {"left": left, "right": right}.get(screen_choice, (None, None))
        # On a gold pair the on-prompt answer (response_a) must win; "both bad" is tolerated (it may really be bad).
        failed = bool(is_check) and screen_choice != "both_bad" and winner_id != response_a_id
        values = [pk, screen_choice, winner_id, winner_model_id, rationale.strip(),
                  _vote_seconds(now, served=assignment.created_at, last_vote=last_vote_at), now, failed,
                  reveals_identity]  # fmt: skip
        db_now = rows.db_time(now)
        insert = [*values[:6], db_now, failed, reveals_identity]
        voted = [db_now, pk]
        counted = [0 if is_check else 1, comparison_id]  # attention checks do not count toward k
        try:
            if connection.vendor == "postgresql":
                cursor.execute(_SQL_VOTE_WRITE, [*insert, *voted, *counted])
                vote_id = cursor.fetchone()[0]
            else:
                cursor.execute(_SQL_VOTE_INSERT, insert)
                vote_id = cursor.fetchone()[0]
                cursor.execute(_SQL_VOTED, voted)
                cursor.execute(_SQL_COUNT_VOTE, counted)
        except IntegrityError as exc:  # pragma: no cover - the row lock above makes this unreachable
            raise Conflict("This pair was voted on concurrently.") from exc
        vote = Vote.from_db(connection.alias, [f.attname for f in Vote._meta.concrete_fields], [vote_id, *values])
    assignment.status, assignment.closed_at = Assignment.Status.VOTED, now
    Vote.assignment.field.set_cached_value(vote, assignment)
    if failed and not rater.flagged:
        Rater.objects.filter(pk=rater.pk).update(
            flagged=True, flag_reason=f"Failed an attention check in campaign {campaign_slug} at {now:%Y-%m-%d %H:%M}."
        )
        rater.flagged = True
    if not is_check:  # the campaign may now have met its stopping rule or spent its budget
        transaction.on_commit(lambda: campaign_stop_check_soon(campaign_id=campaign_id))
    return VoteResult(vote=vote, created=True)

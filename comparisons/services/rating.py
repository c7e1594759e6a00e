"""The rater loop: hand a rater their next pair (`assignment_next`), release it (`assignment_skip`) and
record exactly one vote (`vote_cast`).

Both hot paths take their locks before they write. On PostgreSQL candidate comparisons are locked with
`SELECT … FOR UPDATE SKIP LOCKED` and the load is re-counted under the lock, so a comparison never holds
more than k votes plus live leases; a vote on a lease with time to spare is written by one statement that takes
its locks itself, anything else in a transaction that takes them first. On SQLite the settings open every
transaction with BEGIN IMMEDIATE, which serializes writers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from comparisons import rating_queries, rows
from comparisons.access import rater_can_rate
from comparisons.models import Assignment, Campaign, Comparison, Rater, Vote, new_token
from comparisons.routing import routing_draw, routing_plan
from comparisons.services.campaigns import campaign_stop_check_soon
from comparisons.services.reports import ContentReportInvalid, content_reports_parse, content_reports_store


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


def rater_votes_done(*, rater: Rater, campaign: Campaign) -> int:
    """Votes this rater cast in this campaign (the per-rater cap counts these)."""
    return rating_queries.votes_done(rater_id=rater.pk, campaign_id=campaign.pk)


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
    view_row: rating_queries.RaterViewRow | None = None,
) -> Assignment:
    """An Assignment instance from values read (or written) by `rating_queries`, without a query; with
    `view_row` (what the rater is shown of it) as its annotation when given."""
    assignment: Assignment = rows.instance(
        Assignment,
        {"id": pk, "token": token, "comparison_id": comparison_id, "rater_id": rater.pk, "left_is_a": left_is_a,
         "status": status, "created_at": created_at, "leased_until": leased_until, "closed_at": None,
         "routing_probability": routing_probability},
    )  # fmt: skip
    Assignment.rater.field.set_cached_value(assignment, rater)
    if view_row is not None:
        assignment.view_row = view_row
    return assignment


_LEASED = Assignment.Status.LEASED.value


def _lease_gold(*, rater: Rater, comparison_id: int, campaign: Campaign, now: datetime, left_is_a: bool) -> Assignment:
    """Lease an attention check: no quota applies to gold pairs (their votes never count toward k)."""
    return Assignment.objects.create(
        comparison_id=comparison_id,
        rater=rater,
        left_is_a=left_is_a,
        leased_until=now + timedelta(seconds=campaign.lease_seconds),
    )


# How many comparisons a pick ranks first (see rating_queries.rank_candidates). Each costs the database two
# index probes (has this rater seen it, how many live leases it has), most of a pick's work: 64 cost 420-560 µs
# a pick, 16 cost 150-280 µs. Read from a random point among the fewest votes, 16 rarely all carry a lease, even
# with 50 raters on 252 pairs; when they do, the window widens (×4, up to _WIDEST_WINDOW, then the campaign).
CANDIDATE_WINDOW = 16
_WIDEST_WINDOW = 1024
# How many of the best candidates PostgreSQL tries to lock (SKIP LOCKED) before waiting for the best one.
_CANDIDATES_TO_LOCK = 16


def _windows() -> list[int]:
    """The windows a pick ranks in turn before the whole campaign: CANDIDATE_WINDOW, each next one four times
    as wide, up to _WIDEST_WINDOW."""
    windows = [CANDIDATE_WINDOW]
    while windows[-1] < _WIDEST_WINDOW:
        windows.append(windows[-1] * 4)
    return windows


def _ranked(
    *, rater: Rater, campaign: Campaign, now: datetime, tried: set[int], pair: tuple[int, int] | None = None
) -> list[int]:
    """The unseen comparisons under k, fewest votes plus live leases first, ties at random (ids); only those of
    ``pair`` (model ids of responses A and B) when given (adaptive routing).

    A window of CANDIDATE_WINDOW comparisons in the order of their votes is ranked first; the next of
    `_windows()` (and, past the widest, the whole campaign) only when that window is not conclusive: full, and
    every comparison in it carries more load than the most votes in it, so one outside it might carry less
    (`rating_queries._CONCLUSIVE`)."""
    k = campaign.votes_per_comparison
    start = random.random()  # where ties among equal votes begin: a different point for every pick
    for window in (*_windows(), None):
        ranked = rating_queries.rank_candidates(
            campaign_id=campaign.pk,
            rater_id=rater.pk,
            k=k,
            now=now,
            start=start,
            window=window,
            tried=tried,
            pair=pair,
        )
        if not ranked or ranked[0].conclusive:
            break
    return [c.id for c in ranked if c.load < k]


def _pick_candidate(
    *, rater: Rater, campaign: Campaign, now: datetime, tried: set[int], pair: tuple[int, int] | None = None
) -> int | None:
    """The unseen comparison under k with the fewest votes plus live leases (ties at random), locked.

    On PostgreSQL the candidates are read without locks, then the best one no other transaction holds is
    locked (SKIP LOCKED) by a statement of its own: locking in the ranking query itself made PostgreSQL
    re-check the whole ranking for every row a concurrent vote had just updated. When every candidate is
    held, wait for the best one rather than tell this rater there is nothing left: the attempt holds no other
    comparison's lock (see assignment_next), so the wait cannot deadlock. On SQLite the whole transaction
    already holds the database's write lock."""
    ranked = _ranked(rater=rater, campaign=campaign, now=now, tried=tried, pair=pair)
    if not ranked:
        return None
    if connection.vendor == "postgresql":
        free = rating_queries.lock_first_free(ranked[:_CANDIDATES_TO_LOCK])
        if free is not None:
            return free
        rating_queries.lock_comparison(ranked[0])
    return ranked[0]


def _pick_routed(
    *, rater: Rater, campaign: Campaign, now: datetime, tried: set[int]
) -> tuple[int | None, float | None]:
    """Adaptive routing: draw a pair of models from the campaign's routing plan, then take that pair's comparison
    with the fewest votes plus live leases, as `_pick_candidate` does. A pair with nothing left for this rater
    is ruled out and the draw repeated among the others, so the probability returned is the pair's chance
    given the pairs ruled out (the plan renormalized), the weight its vote needs."""
    plan = routing_plan(campaign=campaign)
    exhausted: set[tuple[int, int]] = set()
    while (drawn := routing_draw(plan, exclude=exhausted)) is not None:
        pair, probability = drawn
        pk = _pick_candidate(rater=rater, campaign=campaign, now=now, tried=tried, pair=pair)
        if pk is not None:
            return pk, probability
        exhausted.add(pair)
    return None, None


def _campaign_load(campaign: Campaign, now: datetime) -> int:
    """Votes plus live leases on the campaign's real comparisons (what a vote budget is measured against)."""
    real = Comparison.objects.filter(campaign=campaign, is_attention_check=False)
    votes = real.aggregate(n=Coalesce(Sum("votes_count"), 0))["n"]
    live = Assignment.objects.filter(comparison__in=real, status=Assignment.Status.LEASED, leased_until__gt=now)
    return int(votes) + live.count()


class _PairFilled(Exception):  # noqa: N818 - control flow inside assignment_next, never raised to callers
    """The locked candidate filled up after it was ranked: roll back, which releases its lock, and try again."""

    def __init__(self, comparison_id: int) -> None:
        super().__init__(comparison_id)
        self.comparison_id = comparison_id


def assignment_next(*, rater: Rater, campaign: Campaign) -> Assignment | None:
    """The rater's next pair: their own live unvoted assignment if any, else a new lease on the comparison
    with the fewest votes plus live leases (below k) they have not seen, ties at random. None when nothing is
    left for this rater (campaign not open, per-rater limit reached, or every pair full or already seen).
    The assignment carries what the rater is shown of it as `view_row` (an annotation, as `QuerySet.annotate`
    would set), read in the lease's transaction, for `selectors.rater_view_for_assignment`.

    Each attempt is its own transaction and locks at most one comparison: when the locked one turns out to
    have filled since it was ranked, the attempt rolls back (releasing that lock) before the next one may wait
    for another. Holding one comparison's lock while waiting for another's deadlocks with a rival doing the
    same. Every failed attempt rules its comparison out, so the attempts end."""
    return _assignment_next(rater=rater, campaign=campaign, gold=_attention_check_drawn(campaign))


def _attention_check_drawn(campaign: Campaign) -> bool:
    """Whether this request's pair is to be an attention check: drawn once per request, before any way of
    picking, so that each way serves them at the campaign's rate."""
    return campaign.attention_check_rate > 0 and random.random() < campaign.attention_check_rate


def _assignment_next(*, rater: Rater, campaign: Campaign, gold: bool) -> Assignment | None:
    if _one_call_pick(campaign, gold=gold):
        lease = rating_queries.next_lease_in_one_call(_lease_request(rater=rater, campaign=campaign))
        if lease is not None:
            return _from_lease(lease, rater=rater)
    return _assignment_next_long(rater=rater, campaign=campaign, gold=gold)


def _assignment_next_long(*, rater: Rater, campaign: Campaign, gold: bool) -> Assignment | None:
    tried: set[int] = set()
    while True:
        try:
            with transaction.atomic():
                return _assignment_next_attempt(rater=rater, campaign=campaign, tried=tried, gold=gold)
        except _PairFilled as filled:
            tried.add(filled.comparison_id)


def _one_call_pick(campaign: Campaign, *, gold: bool) -> bool:
    """Whether the campaign's next pair is the plain pick `rating_queries.next_lease_in_one_call` makes, and this
    database serves it in one call: no attention check drawn, open, no vote budget to measure, uniform routing."""
    return (
        not gold
        and campaign.is_open
        and campaign.vote_budget is None
        and campaign.routing != Campaign.Routing.ADAPTIVE
        and rating_queries.one_call_lease_enabled()
    )


def _lease_request(*, rater: Rater, campaign: Campaign) -> rating_queries.LeaseRequest:
    """`_assignment_next_attempt` for a plain pick, as one call asks for it (its current lease, or a new one from
    the first conclusive window of `_windows()`); the call leaves every other decision to the long way."""
    now = timezone.now()
    return rating_queries.LeaseRequest(
        rater_id=rater.pk, campaign_id=campaign.pk, limit=campaign.comparisons_per_rater,
        k=campaign.votes_per_comparison, now=now, leased_until=now + timedelta(seconds=campaign.lease_seconds),
        start=random.random(), windows=_windows(), to_lock=_CANDIDATES_TO_LOCK, token=new_token(),
        coin=random.random() < 0.5,
    )  # fmt: skip


def _from_lease(lease: rating_queries.Lease, *, rater: Rater) -> Assignment:
    return _assignment(
        pk=lease.id, token=lease.token, comparison_id=lease.comparison_id, rater=rater, left_is_a=lease.left_is_a,
        status=_LEASED, created_at=lease.created_at, leased_until=lease.leased_until, view_row=lease.view,
    )  # fmt: skip


def _assignment_next_attempt(*, rater: Rater, campaign: Campaign, tried: set[int], gold: bool) -> Assignment | None:
    # Serialize one rater's concurrent requests (double clicks, two tabs): one lease at a time.
    rating_queries.lock_rater(rater.pk, leasing=True)
    # A rater at the campaign's per-rater cap gets nothing, not even a pair leased before they reached it
    # (their vote on it would be refused).
    limit = campaign.comparisons_per_rater
    if limit is not None and rater_votes_done(rater=rater, campaign=campaign) >= limit:
        return None
    now = timezone.now()
    lease = rating_queries.current_lease(rater_id=rater.pk, campaign_id=campaign.pk, now=now)
    if lease is not None:
        return _from_lease(lease, rater=rater)
    if not campaign.is_open:
        return None
    if campaign.vote_budget is not None and _campaign_load(campaign, now) >= campaign.vote_budget:
        return None  # the budget is spent, or will be by the pairs raters hold now

    if gold and not tried:
        unseen = ~Exists(Assignment.objects.filter(comparison=OuterRef("pk"), rater=rater))
        check = (
            Comparison.objects.filter(campaign=campaign, is_attention_check=True)
            .filter(unseen)
            .order_by("?")
            .values_list("pk", flat=True)
            .first()
        )
        if check is not None:
            return _lease_gold(
                rater=rater, comparison_id=check, campaign=campaign, now=now, left_is_a=random.random() < 0.5
            )

    probability: float | None = None
    if campaign.routing == Campaign.Routing.ADAPTIVE:
        pk, probability = _pick_routed(rater=rater, campaign=campaign, now=now, tried=tried)
    else:
        pk = _pick_candidate(rater=rater, campaign=campaign, now=now, tried=tried)
    if pk is None:
        return None
    # The candidates were ranked on an older snapshot: the INSERT re-counts the votes and live leases in a
    # statement of its own, under the comparison's lock, and leases only while they stay under k. It also
    # counterbalances the sides: the order with fewer votes plus live leases on this comparison, the coin
    # deciding only when they are even.
    token = new_token()
    leased_until = now + timedelta(seconds=campaign.lease_seconds)
    inserted = rating_queries.insert_lease_under_quota(
        token=token, comparison_id=pk, rater_id=rater.pk, coin=random.random() < 0.5, now=now,
        leased_until=leased_until, k=campaign.votes_per_comparison, routing_probability=probability,
    )  # fmt: skip
    if inserted is None:
        raise _PairFilled(pk)
    return _assignment(
        pk=inserted.id, token=token, comparison_id=pk, rater=rater, left_is_a=inserted.left_is_a, status=_LEASED,
        created_at=now, leased_until=leased_until, routing_probability=probability, view_row=inserted.view,
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


@dataclass
class VoteResult:
    vote: Vote
    created: bool
    campaign: Campaign  # the vote's campaign, as read with it
    # With `then_next`: the rater's next pair in that campaign (`assignment_next`), None when nothing is left.
    next: Assignment | None = None


# A vote read without locks is written without a transaction (`rating_queries.write_vote` with `live_after`)
# only while its lease has at least this long left: the time from reading the clock to the write's locks (no
# lock is waited for on the way) must stay under it, or a rival could lease the pair's last place counting this
# lease as expired. Closer to its end, the vote takes the locks first and reads the clock after them.
UNLOCKED_VOTE_MARGIN = timedelta(seconds=30)


@dataclass
class _Ballot:
    """A vote the service decided to write: its values, and what is done with it once written."""

    target: rating_queries.VoteTarget
    assignment: Assignment
    values: dict[str, Any]
    left_response_id: int
    right_response_id: int
    failed: bool  # an attention check failed: the rater is flagged
    now: datetime


def vote_cast(
    *,
    rater: Rater,
    token: str,
    choice: str,
    rationale: str = "",
    reveals_identity: bool = False,
    content_reports: Any = None,
    then_next: bool = False,
) -> VoteResult:
    """Record the rater's vote on an assignment, exactly once.

    ``reveals_identity`` is the rater's report that an answer of the pair tells who wrote it (it names its
    model or maker); the vote is stored with ``identity_reported`` set, and analyses can leave such pairs out.
    ``content_reports`` (``[{"side": "A", "kind": "harmful"}, …]``) flags answers of the pair by their side on
    the rater's screen; they are stored with a new vote, in its transaction (`services.reports`).

    `choice` is the API's "A" | "B" | "tie" | "both_bad" (A = left on the rater's screen). The same
    choice again returns the stored vote (created=False); a different one raises Conflict; another
    rater's or an unknown token raises NotFound, and so does a token of a campaign the rater may no
    longer rate (a named rater removed from it). When the lease has expired the vote is still accepted
    while the comparison is under its quota of k votes plus other raters' live leases, and its left/right order
    under half of them (k odd: one more), otherwise Gone.
    Gone too: a closed campaign, a pair this rater skipped, and any vote past the campaign's per-rater
    cap. The vote's `seconds` run from the later of serving the pair and the rater's previous vote.

    With `then_next`, the result also carries the rater's next pair in the vote's campaign (`assignment_next`,
    after the vote): what a rater's browser asks for with every vote.

    On PostgreSQL the assignment is read without locks first. When the decision needs none (a repeat, a refusal,
    or a vote on a lease live for longer than `UNLOCKED_VOTE_MARGIN`, with no content report, on no attention
    check, not the last the per-rater cap allows) the vote is written in one statement that takes the locks
    itself (two round trips in all, no transaction to open and commit), and with `then_next` the next pair
    is leased in that same statement when it is a plain pick (`rating_queries.write_vote_then_lease`); anything
    else, or a write that finds the pair held or changed, is decided again under the locks, in a transaction.
    """
    given = _vote_input(choice, rationale, reveals_identity, content_reports)
    gold: bool | None = None  # the next pair's attention-check draw, once made: one per request
    if connection.vendor == "postgresql" and not given.reports:
        decided = _vote_decide(rater=rater, token=token, given=given, locked=False)
        if isinstance(decided, VoteResult):
            return _with_next(decided, rater=rater, gold=None) if then_next else decided
        if decided is not None:
            campaign = decided.target.campaign
            live_after = decided.now + UNLOCKED_VOTE_MARGIN
            if then_next:
                gold = _attention_check_drawn(campaign)
            if then_next and _one_call_pick(campaign, gold=bool(gold)):
                written = rating_queries.write_vote_then_lease(
                    values=decided.values, comparison_id=decided.target.comparison_id, live_after=live_after,
                    lease=_lease_request(rater=rater, campaign=campaign),
                )  # fmt: skip
                if written is not None:
                    vote, lease = written
                    result = _vote_written(vote, decided)
                    # No lease: the call left the pick to the long way, which decides.
                    result.next = (
                        _from_lease(lease, rater=rater) if lease is not None
                        else _assignment_next_long(rater=rater, campaign=campaign, gold=False)
                    )  # fmt: skip
                    return result
            else:
                stored = rating_queries.write_vote(
                    values=decided.values, comparison_id=decided.target.comparison_id, counted=1,
                    live_after=live_after,
                )  # fmt: skip
                if stored is not None:
                    result = _vote_written(stored, decided)
                    return _with_next(result, rater=rater, gold=gold) if then_next else result
    with transaction.atomic():
        result = _vote_locked(rater=rater, token=token, given=given)
    return _with_next(result, rater=rater, gold=gold) if then_next else result


def _with_next(result: VoteResult, *, rater: Rater, gold: bool | None) -> VoteResult:
    """`result` with the rater's next pair in its campaign; `gold` is the attention-check draw already made for
    this request, if any."""
    campaign = result.campaign
    result.next = _assignment_next(
        rater=rater, campaign=campaign, gold=_attention_check_drawn(campaign) if gold is None else gold
    )
    return result


class _VoteInput(NamedTuple):
    screen_choice: str  # Vote.Choice: left, right, tie, both_bad
    rationale: str
    reveals_identity: bool
    reports: Any  # parsed by services.reports


def _vote_input(choice: Any, rationale: Any, reveals_identity: Any, content_reports: Any) -> _VoteInput:
    """What the rater sent, checked, or InvalidChoice naming what is wrong."""
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
        reports = content_reports_parse(content_reports)
    except ContentReportInvalid as exc:
        raise InvalidChoice(str(exc)) from None
    try:
        rationale.encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON may carry half of a surrogate pair ("\ud800"), which no database stores
        raise InvalidChoice(
            f"'rationale' contains a lone surrogate (\\u{ord(rationale[exc.start]):04x}) at character {exc.start}, "
            "which is not text; send the whole character (both halves of the pair) or leave it out."
        ) from None
    return _VoteInput(API_CHOICES[choice].value, rationale, reveals_identity, reports)


def _vote_locked(*, rater: Rater, token: str, given: _VoteInput) -> VoteResult:
    """`vote_cast` under the locks of the assignment and its comparison, in the caller's transaction."""
    decided = _vote_decide(rater=rater, token=token, given=given, locked=True)
    if isinstance(decided, VoteResult):
        return decided
    assert decided is not None  # under the locks every vote is decided
    try:
        # Attention checks do not count toward k.
        vote = rating_queries.write_vote(
            values=decided.values, comparison_id=decided.target.comparison_id,
            counted=0 if decided.target.is_attention_check else 1,
        )  # fmt: skip
    except IntegrityError as exc:  # pragma: no cover - the row lock above makes this unreachable
        raise Conflict("This pair was voted on concurrently.") from exc
    assert vote is not None  # written unconditionally
    content_reports_store(
        vote_id=vote.pk, left_response_id=decided.left_response_id, right_response_id=decided.right_response_id,
        reports=given.reports,
    )  # fmt: skip
    if decided.failed and not rater.flagged:
        Rater.objects.filter(pk=rater.pk).update(
            flagged=True,
            flag_reason=f"Failed an attention check in campaign {decided.target.campaign.slug} "
            f"at {decided.now:%Y-%m-%d %H:%M}.",
        )
        rater.flagged = True
    return _vote_written(vote, decided)


def _vote_written(vote: Vote, decided: _Ballot) -> VoteResult:
    assignment = decided.assignment
    assignment.status, assignment.closed_at = Assignment.Status.VOTED, decided.now
    Vote.assignment.field.set_cached_value(vote, assignment)
    campaign = decided.target.campaign
    if not decided.target.is_attention_check:  # the campaign may now have met its stopping rule or spent its budget
        transaction.on_commit(lambda: campaign_stop_check_soon(campaign_id=campaign.pk))
    return VoteResult(vote=vote, created=True, campaign=campaign)


def _vote_decide(*, rater: Rater, token: str, given: _VoteInput, locked: bool) -> VoteResult | _Ballot | None:
    """What to do with a vote on the rater's assignment `token`: the stored vote (a repeat), the vote to write, an
    error raised, or, when it is read without locks (`locked` false), None for a decision that needs them."""
    # Locked: the assignment (one vote per assignment) and its comparison (the quota), in one query; the clock is
    # read after the locks so a lease cannot expire between the check and a rival's lease.
    target = rating_queries.vote_target(token=token, rater_id=rater.pk, lock=locked)
    if target is None:
        raise NotFound("No such assignment for this rater.")
    campaign = target.campaign
    if not _may_rate(rater, campaign_id=campaign.pk, named_member=target.named_member):
        raise NotFound("No such assignment for this rater.")
    assignment = _assignment(
        pk=target.id, token=token, comparison_id=target.comparison_id, rater=rater, left_is_a=target.left_is_a,
        status=target.status, created_at=target.created_at, leased_until=target.leased_until,
    )  # fmt: skip
    if target.status == Assignment.Status.VOTED:
        existing = Vote.objects.filter(assignment_id=target.id).first()
        if existing is not None:
            Vote.assignment.field.set_cached_value(existing, assignment)
            if existing.choice == given.screen_choice:
                return VoteResult(vote=existing, created=False, campaign=campaign)
            raise Conflict("This pair already has a different vote from you; a vote cannot be changed.")

    if campaign.status == Campaign.Status.CLOSED:
        raise Gone("This campaign is closed; the vote was not recorded.")
    if target.status == Assignment.Status.SKIPPED:
        raise Gone("You skipped this pair; a skipped pair cannot be voted on later.")
    per_rater = campaign.comparisons_per_rater
    if per_rater is not None:
        votes_done = target.votes_done
        assert votes_done is not None  # counted in the same row whenever its campaign has a cap
        if votes_done == per_rater - 1 and connection.vendor == "postgresql":
            if not locked:
                return None
            # The last vote the cap allows: serialize it with the rater's other votes (two tabs voting expired
            # pairs at once) and count again under the lock. This transaction already holds its comparison,
            # which no other assignment of this rater can be on, so the extra lock cannot deadlock.
            rating_queries.lock_rater(rater.pk)
            votes_done = rater_votes_done(rater=rater, campaign=campaign)
        if votes_done >= per_rater:
            raise Gone(
                f"You have judged the {per_rater} pair{_plural(per_rater)} this campaign asks of one rater; "
                "the vote was not recorded."
            )
    now = timezone.now()
    if not locked and (
        target.is_attention_check  # a failed one flags the rater, in the vote's transaction
        or target.status != Assignment.Status.LEASED
        or target.leased_until <= now + UNLOCKED_VOTE_MARGIN
    ):
        return None
    k = campaign.votes_per_comparison
    live = target.status == Assignment.Status.LEASED and target.leased_until > now
    if not live and not target.is_attention_check:
        load = rating_queries.load_of_others(comparison_id=target.comparison_id, assignment_id=target.id, now=now)
        # Counterbalancing: one left/right order holds at most half of the k votes (k odd: one more).
        in_order = rating_queries.order_load_of_others(
            comparison_id=target.comparison_id, assignment_id=target.id, left_is_a=target.left_is_a, now=now
        )
        if load >= k or in_order >= (k + 1) // 2:
            raise Gone("Your time on this pair ran out and it has since been filled by other raters.")

    left, right = ((target.response_a_id, target.model_a_id), (target.response_b_id, target.model_b_id))[
        :: 1 if target.left_is_a else -1
    ]
    screen_choice = given.screen_choice
    winner_id, winner_model_id = {"left": left, "right": right}.get(screen_choice, (None, None))
    # On a gold pair the on-prompt answer (response_a) must win; "both bad" is tolerated (it may really be bad).
    failed = target.is_attention_check and screen_choice != "both_bad" and winner_id != target.response_a_id
    values = {
        "assignment_id": target.id, "choice": screen_choice, "winner_response_id": winner_id,
        "winner_model_id": winner_model_id, "rationale": given.rationale.strip(),
        "seconds": _vote_seconds(now, served=target.created_at, last_vote=target.last_vote_at),
        "submitted_at": now, "attention_failed": failed, "identity_reported": given.reveals_identity,
    }  # fmt: skip
    return _Ballot(
        target=target, assignment=assignment, values=values, left_response_id=left[0], right_response_id=right[0],
        failed=failed, now=now,
    )  # fmt: skip

"""Changes to campaigns, raters, assignments and votes, one module per subject.

`campaigns` (create, update, open, pause, close), `raters` (join, named raters, update, unflag, analysts) and
`rating` (the rater loop: next pair, skip, vote). Callers import from here: ``from comparisons import services``.
`campaigns` (create, open, pause, close), `raters` (join, named raters, analysts), `rating` (the rater loop:
next pair, skip, vote), `reports` (content reports sent with a vote), `judgments` (an automatic judge's
imported verdicts) and `snapshots` (frozen, published results). Callers import from here:
``from comparisons import services``.
"""

from comparisons.services.campaigns import (
    COMPARED_SETTINGS,
    CampaignSettings,
    OpenReport,
    campaign_close,
    campaign_close_if_done,
    campaign_create,
    campaign_open,
    campaign_pause,
    campaign_prompts,
    campaign_rotate_invite,
    campaign_settings_check,
    campaign_stop_check_soon,
    campaign_stopping_check,
    campaign_update,
    identity_leak_lines,
)
from comparisons.services.judgments import JudgmentImport, judgments_import
from comparisons.services.raters import (
    JoinRefused,
    analyst_group,
    rater_create_from_invite,
    rater_create_named,
    rater_join,
    rater_unflag,
    rater_update,
    user_make_analyst,
)
from comparisons.services.rating import (
    API_CHOICES,
    MAX_RATIONALE_CHARS,
    Conflict,
    Gone,
    InvalidChoice,
    NotFound,
    RatingError,
    VoteResult,
    assignment_next,
    assignment_skip,
    rater_votes_done,
    vote_cast,
)
from comparisons.services.reports import REPORT_KINDS, content_reports_parse
from comparisons.services.snapshots import snapshot_publish

__all__ = [
    "COMPARED_SETTINGS",
    "CampaignSettings",
    "API_CHOICES",
    "MAX_RATIONALE_CHARS",
    "Conflict",
    "Gone",
    "InvalidChoice",
    "JoinRefused",
    "JudgmentImport",
    "NotFound",
    "OpenReport",
    "REPORT_KINDS",
    "RatingError",
    "VoteResult",
    "analyst_group",
    "assignment_next",
    "assignment_skip",
    "campaign_close",
    "campaign_close_if_done",
    "campaign_create",
    "campaign_open",
    "campaign_pause",
    "campaign_prompts",
    "campaign_rotate_invite",
    "campaign_settings_check",
    "campaign_update",
    "content_reports_parse",
    "campaign_stop_check_soon",
    "campaign_stopping_check",
    "identity_leak_lines",
    "judgments_import",
    "rater_create_from_invite",
    "rater_create_named",
    "rater_join",
    "rater_unflag",
    "rater_update",
    "rater_votes_done",
    "snapshot_publish",
    "user_make_analyst",
    "vote_cast",
]

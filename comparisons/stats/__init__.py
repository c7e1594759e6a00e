"""Statistics of pairwise votes: win rates with cluster-bootstrap CIs, Bradley–Terry, agreement, biases.

Pure pandas/numpy/scipy: importing this package never imports Django, so it runs offline, in the
benchmark and in tests on its own. Everything takes one vote table (see ``table`` for the columns).
"""

from .agreement import fleiss_kappa, krippendorff_alpha_nominal
from .bootstrap import CI_METHODS
from .io import csv_lines, read_votes_csv
from .pairs import winrate_ci
from .ranking import bt_fit
from .report import (
    SUMMARY_COLUMNS,
    analyze,
    components_words,
    format_p,
    format_text,
    headline,
    interval_words,
    summary_rows,
)
from .signflip import sign_flip_p
from .table import BOTH_BAD_MODES, EXPORT_COLUMNS, REQUIRED_COLUMNS, VoteTableError, votes_prepare

__all__ = [
    "BOTH_BAD_MODES",
    "CI_METHODS",
    "EXPORT_COLUMNS",
    "REQUIRED_COLUMNS",
    "SUMMARY_COLUMNS",
    "VoteTableError",
    "analyze",
    "components_words",
    "bt_fit",
    "csv_lines",
    "fleiss_kappa",
    "format_p",
    "format_text",
    "headline",
    "interval_words",
    "krippendorff_alpha_nominal",
    "read_votes_csv",
    "sign_flip_p",
    "summary_rows",
    "votes_prepare",
    "winrate_ci",
]

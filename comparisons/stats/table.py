"""The vote table every statistic takes: its columns, its validation and its integer encoding.

A vote table is a pandas DataFrame with one row per vote. Required columns:

``prompt_id``
    the prompt (item) the two responses answer; votes on one prompt are resampled together.
``model_a``, ``model_b``
    the two models compared (any order; they must differ).
``winner``
    ``model_a``'s name, ``model_b``'s name, ``tie`` or ``both_bad``.

Optional columns (used when present, ignored otherwise):

``category``
    a prompt category (Self-Instruct's ``motivation_app``) for the per-category breakdown.
``left_model``
    the model whose response was shown on the left (position bias); empty when unknown.
``rater``
    who voted (rater agreement; without it every vote counts as a different rater).
``attention_failed``, ``flagged``
    booleans (``true/false``, ``1/0``, ``yes/no``, empty = false): the rater failed an attention check,
    the vote was flagged (for example as too fast). ``exclude_flagged`` drops both.
``seconds``
    time the rater took (``min_seconds`` drops faster votes).
``identity_reported``
    boolean: the rater reported that an answer of the pair reveals who wrote it.
    ``exclude_identity_reports`` drops every vote on a reported pair (same prompt and the same two models),
    whoever reported it.
``length_a``, ``length_b``
    lengths in characters of ``model_a``'s and ``model_b``'s responses (length bias); the campaign export gives
    the length of the canonical served text, what the rater read.
``routing_probability``
    the chance, in (0, 1], that the vote's pair had of being served under adaptive routing; empty for a vote
    served without it. When present, ``analyze`` adds inverse-probability-weighted win rates and a weighted
    ranking (``weighting``), which adaptive routing needs to stay unbiased.

Other columns (``campaign``, ``submitted_at``, ``rationale``...) are carried along untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("prompt_id", "model_a", "model_b", "winner")
EXPORT_COLUMNS = (
    "campaign",
    "prompt_id",
    "category",
    "model_a",
    "model_b",
    "left_model",
    "winner",
    "rater",
    "attention_failed",
    "submitted_at",
    "seconds",
    "length_a",
    "length_b",
    "rationale",
    "identity_reported",
    "routing_probability",
)
TIE = "tie"
BOTH_BAD = "both_bad"
BOTH_BAD_MODES = ("tie", "exclude")

# Outcome codes, always relative to the pair's first model in alphabetical order.
FIRST_WINS, SECOND_WINS, TIED, BOTH_BAD_CODE = 0, 1, 2, 3
# Winner codes relative to the row's own columns (``side``; ``left_side`` uses the first two, -1 = unknown).
SIDE_A, SIDE_B, SIDE_TIE, SIDE_BOTH_BAD = 0, 1, 2, 3

_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n", ""}


class VoteTableError(ValueError):
    """The vote table cannot be analysed; the message says which column or row is wrong and why."""


@dataclass(frozen=True)
class Votes:
    """A validated vote table and its integer encoding (one entry per vote in each array).

    ``first``/``second`` index ``models`` with ``first < second`` (alphabetical), ``outcome`` is one of
    FIRST_WINS, SECOND_WINS, TIED, BOTH_BAD_CODE relative to that order, ``side`` the winner relative
    to the row's model_a/model_b (SIDE_*), ``left_side`` which of them was shown left (-1 unknown),
    ``prompt`` indexes ``prompts``.
    """

    frame: pd.DataFrame
    models: list[str]
    prompts: list[str]
    first: np.ndarray
    second: np.ndarray
    outcome: np.ndarray
    side: np.ndarray
    left_side: np.ndarray
    prompt: np.ndarray
    n_input: int
    n_excluded: int

    @property
    def n(self) -> int:
        return len(self.frame)


def _where(index: int, first_line: int | None) -> str:
    return f"line {first_line + index}" if first_line is not None else f"row {index}"


def _fail_row(mask: np.ndarray, frame: pd.DataFrame, first_line: int | None, problem: str) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        pos = int(bad[0])
        more = f" ({bad.size - 1} more rows have the same problem)" if bad.size > 1 else ""
        values = ", ".join(f"{col}={frame.iloc[pos][col]!r}" for col in ("prompt_id", "model_a", "model_b", "winner"))
        raise VoteTableError(f"Bad vote at {_where(pos, first_line)}: {problem} ({values}){more}.")


def _text(frame: pd.DataFrame, column: str) -> tuple[pd.Categorical, np.ndarray, np.ndarray]:
    """The column as a categorical of its stripped strings (missing = ""), and the same as codes into its
    distinct stripped values: (column, codes, values). Each distinct value is stripped once; a categorical
    column (the results page's vote table) is not factorized again. A categorical and not a million Python
    strings: pandas would look at each to infer its string type, and hash them all again to factorize."""
    raw = frame[column]
    if isinstance(raw.dtype, pd.CategoricalDtype):
        codes, uniques = raw.cat.codes.to_numpy(), raw.cat.categories.to_numpy(dtype=object)
    else:
        # Plain object arrays factorize several times faster than pandas' string dtypes.
        codes, uniques = pd.factorize(raw.to_numpy(dtype=object), use_na_sentinel=True)
    # Values that differ only in surrounding spaces become one; missing (code -1) becomes "".
    merged, values = pd.factorize(np.array([str(u).strip() for u in uniques] + [""], dtype=object))
    codes = merged[np.where(codes < 0, len(uniques), codes)]
    values = np.asarray(values, dtype=object)
    return pd.Categorical.from_codes(codes, values), codes, values


def used_in_order(column: pd.Categorical) -> tuple[np.ndarray, np.ndarray]:
    """Each row's index among the categories that occur, those sorted by their text, and which categories those
    are (indices into ``column.categories``, in that order). Found from the codes, so only the few distinct
    values are compared, never the rows."""
    present = np.flatnonzero(np.bincount(column.codes, minlength=len(column.categories)))
    kept = present[sorted(range(len(present)), key=lambda i: str(column.categories[present[i]]))]
    rank = np.empty(len(column.categories), dtype=np.int64)
    rank[kept] = np.arange(len(kept))
    return rank[column.codes], kept


def sorted_codes(column: pd.Categorical) -> tuple[np.ndarray, list[str]]:
    """``pd.factorize(strings, sort=True)`` of a categorical's values (`used_in_order`, the names as text)."""
    codes, kept = used_in_order(column)
    return codes, [str(column.categories[i]) for i in kept]


def _boolean(frame: pd.DataFrame, column: str, first_line: int | None) -> np.ndarray:
    raw = frame[column]
    if raw.dtype == bool:
        return raw.to_numpy()
    codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    words = [str(u).strip().lower() for u in uniques]
    for i, word in enumerate(words):
        if word not in _TRUE | _FALSE and not (isinstance(uniques[i], bool | np.bool_)):
            pos = int(np.flatnonzero(codes == i)[0])
            raise VoteTableError(
                f"Bad vote at {_where(pos, first_line)}: column {column!r} must be a boolean "
                f"(true/false, 1/0, yes/no or empty), not {raw.iloc[pos]!r}."
            )
    truth = np.array([w in _TRUE for w in words] + [False])
    return truth[codes]


def _number(frame: pd.DataFrame, column: str, first_line: int | None) -> np.ndarray:
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.to_numpy(dtype=float)
        bad = np.flatnonzero(values < 0)
    else:
        codes, uniques = pd.factorize(raw, use_na_sentinel=True)
        texts = [str(u).strip() for u in uniques]
        parsed = pd.to_numeric(pd.Series([t if t else None for t in texts], dtype=object), errors="coerce")
        table = np.append(parsed.to_numpy(dtype=float), np.nan)
        broken = np.array([bool(t) and np.isnan(v) for t, v in zip(texts, table[:-1], strict=True)] + [False])
        values = table[codes]
        bad = np.flatnonzero(broken[codes] | (values < 0))
    if bad.size:
        pos = int(bad[0])
        raise VoteTableError(
            f"Bad vote at {_where(pos, first_line)}: column {column!r} must be a non-negative number "
            f"or empty, not {raw.iloc[pos]!r}."
        )
    return values


def votes_prepare(
    frame: pd.DataFrame,
    *,
    exclude_flagged: bool = False,
    min_seconds: float | None = None,
    exclude_identity_reports: bool = False,
    first_line: int | None = None,
) -> Votes:
    """Validate a vote table, normalise its columns and encode it for the statistics.

    ``exclude_identity_reports`` drops every vote on a pair (prompt and the two models, either order) that
    any rater reported as revealing who wrote it; it needs the ``identity_reported`` column.

    ``first_line`` is the file line of the first row (2 for a CSV with a header) so errors can name
    the line; without it errors name the 0-based row. Raises VoteTableError on the first problem.
    """
    if not isinstance(frame, pd.DataFrame):
        raise VoteTableError(f"Expected a pandas DataFrame of votes, got {type(frame).__name__}.")
    missing = [col for col in REQUIRED_COLUMNS if col not in frame.columns]
    if missing:
        raise VoteTableError(
            f"The vote table has no column {', '.join(repr(c) for c in missing)}; "
            f"required columns are {', '.join(REQUIRED_COLUMNS)} "
            f"(found: {', '.join(map(str, frame.columns)) or 'none'})."
        )
    if frame.empty:
        raise VoteTableError("The vote table has no votes (only a header or nothing at all).")

    df = frame.reset_index(drop=True).copy()
    name_columns = ["model_a", "model_b", "winner"] + (["left_model"] if "left_model" in df.columns else [])
    texts: dict[str, list[np.ndarray]] = {}
    for col in ("prompt_id", *name_columns, *(c for c in ("category", "rater") if c in df.columns)):
        df[col], *texts[col] = _text(df, col)
    for col in REQUIRED_COLUMNS:
        codes, values = texts[col]
        _fail_row(np.isin(codes, np.flatnonzero(values == "")), df, first_line, f"{col} is empty")
    # Compare names as integer codes in one shared vocabulary: far faster than string comparisons. The columns'
    # own distinct values are few, so the vocabulary is made of them, not of every row.
    shared, vocab = pd.factorize(np.concatenate([texts[col][1] for col in name_columns]))
    offsets = np.cumsum([0] + [len(texts[col][1]) for col in name_columns])
    code = {col: shared[offsets[i] + texts[col][0]] for i, col in enumerate(name_columns)}
    lookup = {str(name): i for i, name in enumerate(vocab)}
    code_a, code_b, code_w = code["model_a"], code["model_b"], code["winner"]
    for reserved in (TIE, BOTH_BAD):
        _fail_row(
            (code_a == lookup.get(reserved, -2)) | (code_b == lookup.get(reserved, -2)),
            df,
            first_line,
            f"{reserved!r} is a verdict and cannot be a model name",
        )
    _fail_row(code_a == code_b, df, first_line, "model_a and model_b are the same model")
    is_a, is_b = code_w == code_a, code_w == code_b
    is_tie, is_bad = code_w == lookup.get(TIE, -2), code_w == lookup.get(BOTH_BAD, -2)
    _fail_row(
        ~(is_a | is_b | is_tie | is_bad),
        df,
        first_line,
        "winner must be model_a, model_b, 'tie' or 'both_bad'",
    )
    side = np.select([is_a, is_b, is_tie], [SIDE_A, SIDE_B, SIDE_TIE], SIDE_BOTH_BAD).astype(np.int8)
    left_side = np.full(len(df), -1, dtype=np.int8)
    if "left_model" in df.columns:
        code_l = code["left_model"]
        left_side[code_l == code_a] = SIDE_A
        left_side[code_l == code_b] = SIDE_B
        bad_left = (left_side < 0) & (code_l != lookup.get("", -2))
        if bad_left.any():
            pos = int(np.flatnonzero(bad_left)[0])
            raise VoteTableError(
                f"Bad vote at {_where(pos, first_line)}: left_model {df['left_model'].iloc[pos]!r} is neither "
                f"model_a ({df['model_a'].iloc[pos]!r}) nor model_b ({df['model_b'].iloc[pos]!r})."
            )
    for col in ("attention_failed", "flagged", "identity_reported"):
        if col in df.columns:
            df[col] = _boolean(df, col, first_line)
    for col in ("seconds", "length_a", "length_b"):
        if col in df.columns:
            df[col] = _number(df, col, first_line)
    if "routing_probability" in df.columns:
        probability = _number(df, "routing_probability", first_line)
        bad = np.flatnonzero(~np.isnan(probability) & ((probability <= 0) | (probability > 1)))
        if bad.size:
            pos = int(bad[0])
            raise VoteTableError(
                f"Bad vote at {_where(pos, first_line)}: column 'routing_probability' must be a probability "
                f"above 0 and at most 1 (or empty for a vote served without adaptive routing), "
                f"not {df['routing_probability'].iloc[pos]!r}."
            )
        df["routing_probability"] = probability

    n_input = len(df)
    keep = np.ones(n_input, dtype=bool)
    if exclude_flagged:
        for col in ("attention_failed", "flagged"):
            if col in df.columns:
                keep &= ~df[col].to_numpy(dtype=bool)
    if min_seconds is not None:
        if "seconds" not in df.columns:
            raise VoteTableError("min_seconds needs a 'seconds' column, and the vote table has none.")
        keep &= ~(df["seconds"].to_numpy() < min_seconds)
    if exclude_identity_reports:
        if "identity_reported" not in df.columns:
            raise VoteTableError(
                "exclude_identity_reports needs an 'identity_reported' column, and the vote table has none "
                "(exports made before raters could report self-identifying answers lack it)."
            )
        # A pair is its prompt and its two models in either order: one report takes all its votes out.
        prompt_code = pd.factorize(df["prompt_id"].to_numpy(dtype=object))[0].astype(np.int64)
        width = np.int64(len(vocab))
        pair = (prompt_code * width + np.minimum(code_a, code_b)) * width + np.maximum(code_a, code_b)
        keep &= ~np.isin(pair, pair[df["identity_reported"].to_numpy(dtype=bool)])
    if not keep.all():
        df = df[keep].reset_index(drop=True)
        side, left_side = side[keep], left_side[keep]
        code_a, code_b = code_a[keep], code_b[keep]
    if df.empty:
        raise VoteTableError(f"All {n_input} votes were excluded by the filters; nothing is left to analyse.")

    used = np.unique(np.concatenate([code_a, code_b]))
    models = sorted(str(vocab[c]) for c in used)
    rank = np.full(len(vocab), -1, dtype=np.int64)
    rank[[lookup[m] for m in models]] = np.arange(len(models))
    model_a, model_b = rank[code_a], rank[code_b]
    prompt_codes, prompts = sorted_codes(df["prompt_id"].array)
    first = np.minimum(model_a, model_b)
    second = np.maximum(model_a, model_b)
    a_is_first = model_a < model_b
    outcome = np.full(len(df), TIED, dtype=np.int8)
    outcome[side == SIDE_BOTH_BAD] = BOTH_BAD_CODE
    outcome[((side == SIDE_A) & a_is_first) | ((side == SIDE_B) & ~a_is_first)] = FIRST_WINS
    outcome[((side == SIDE_A) & ~a_is_first) | ((side == SIDE_B) & a_is_first)] = SECOND_WINS
    return Votes(
        frame=df,
        models=models,
        prompts=[str(p) for p in prompts],
        first=first.astype(np.int64),
        second=second.astype(np.int64),
        outcome=outcome,
        side=side,
        left_side=left_side,
        prompt=prompt_codes.astype(np.int64),
        n_input=n_input,
        n_excluded=n_input - len(df),
    )

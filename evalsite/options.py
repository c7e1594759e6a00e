"""Types for the numeric options of management commands: a bad value stops the command with one clear line.

Each is an argparse ``type=`` callable. A value that is not a number, or not finite, or out of range
raises ``ArgumentTypeError``: on the command line argparse prints the usage and
``error: argument --seed: must be a whole number from 0 to ..., not '-1'`` and exits with status 2;
through ``call_command`` Django raises ``CommandError`` with the same words. Never a traceback.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

# The largest value a PositiveIntegerField holds on every database this site supports.
DB_INT_MAX = 2_147_483_647
SEED_MAX = 2**63 - 1


def whole_number(*, minimum: int = 0, maximum: int = DB_INT_MAX) -> Callable[[str], int]:
    """A whole number from ``minimum`` to ``maximum`` (inclusive)."""

    def parse(text: str) -> int:
        wanted = f"must be a whole number from {minimum:,} to {maximum:,}"
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{wanted}, not {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{wanted}, not {text!r}")
        return value

    parse.__name__ = "whole number"
    return parse


def integer(text: str) -> int:
    """Any whole number, for an option whose range the service it goes to checks (and explains)."""
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None


integer.__name__ = "whole number"


def real_number(
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
) -> Callable[[str], float]:
    """A finite number within the given bounds: ``minimum``/``maximum`` inclusive, ``above``/``below`` strict."""
    limits = []
    if minimum is not None:
        limits.append(f"at least {minimum:g}")
    if above is not None:
        limits.append(f"greater than {above:g}")
    if maximum is not None:
        limits.append(f"at most {maximum:g}")
    if below is not None:
        limits.append(f"less than {below:g}")
    wanted = "must be a finite number" + (f" {' and '.join(limits)}" if limits else "")

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{wanted}, not {text!r}") from None
        if (
            not math.isfinite(value)
            or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)
            or (above is not None and value <= above)
            or (below is not None and value >= below)
        ):
            raise argparse.ArgumentTypeError(f"{wanted}, not {text!r}")
        return value

    parse.__name__ = "number"
    return parse


BOOTSTRAP_ROUNDS = whole_number(minimum=0, maximum=100_000)
SEED = whole_number(minimum=0, maximum=SEED_MAX)
AT_LEAST_ONE = whole_number(minimum=1)
CONFIDENCE = real_number(above=0.0, below=1.0)
SHARE = real_number(minimum=0.0, maximum=1.0)
NON_NEGATIVE = real_number(minimum=0.0)
POSITIVE = real_number(above=0.0)
HALF_WIDTH_POINTS = real_number(above=0.0, maximum=50.0)

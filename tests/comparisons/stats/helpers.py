"""Small builders of vote tables for the statistics tests."""

from __future__ import annotations

import pandas as pd


def votes_frame(rows: list[tuple], columns: tuple[str, ...] = ("prompt_id", "model_a", "model_b", "winner")):
    return pd.DataFrame(rows, columns=list(columns))


def pair_votes(model: str, baseline: str, wins: int, losses: int, ties: int, *, start: int = 0) -> list[tuple]:
    """One vote per prompt: ``wins`` prompts won by ``model``, ``losses`` by ``baseline``, ``ties`` tied."""
    rows = []
    prompt = start
    for count, winner in ((wins, model), (losses, baseline), (ties, "tie")):
        for _ in range(count):
            rows.append((f"p{prompt}", model, baseline, winner))
            prompt += 1
    return rows

"""Fault drills reuse the rating tests' client and the generation tests' tiny checkpoints."""

from tests.comparisons.conftest import RaterClient, rater_client  # noqa: F401
from tests.generation.conftest import (  # noqa: F401
    checkpoint_store,
    eval_set,
    media_root,
    ready_model,
    tiny_archive,
    tiny_checkpoint,
)

"""Security tests reuse the rating tests' browser-like client (CSRF enforced, joins by invite link)."""

from tests.comparisons.conftest import RaterClient, rater_client  # noqa: F401


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print how many bad-input cases ran (tests/security/test_bad_input.py)."""
    import sys

    module = sys.modules.get("tests.security.test_bad_input")
    if module is not None and module.CASES_RUN:
        terminalreporter.write_line(f"bad-input cases: {len(module.CASES_RUN)}")

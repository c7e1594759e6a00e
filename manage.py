#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Are you sure it's installed and "
            "available on your PYTHONPATH environment variable? Did you "
            "forget to activate a virtual environment?"
        ) from exc
    try:
        settings.DEBUG  # noqa: B018 - loads the settings from the environment
    except ImproperlyConfigured as exc:
        # A bad environment variable: say which, without a traceback.
        sys.exit(f"Configuration error: {exc} See README.md, 'Configuration'.")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

"""Signed-in sessions name the authentication backend by its dotted path, and Django logs out any session whose
backend is not in AUTHENTICATION_BACKENDS. The backend moved from `comparisons.auth` to `comparisons.backends`:
rewrite the path in live sessions, so raters who joined by an invite link (who have no password to sign in
again) keep their rater, pairs and completion code across the upgrade."""

from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import migrations
from django.utils import timezone

OLD = "comparisons.auth.RaterModelBackend"
NEW = "comparisons.backends.RaterModelBackend"
BACKEND_SESSION_KEY = "_auth_user_backend"  # django.contrib.auth.BACKEND_SESSION_KEY


def _move(apps, schema_editor, *, old: str, new: str) -> None:
    if "django.contrib.sessions" not in settings.INSTALLED_APPS:
        return
    Session = apps.get_model("sessions", "Session")
    live = Session.objects.filter(expire_date__gt=timezone.now()).values_list("session_key", flat=True)
    for key in live.iterator():
        # Django's store of this table (sessions moved to a table of their own later, in 0016, which copies them).
        store = SessionStore(session_key=key)
        if store.get(BACKEND_SESSION_KEY) == old:
            store[BACKEND_SESSION_KEY] = new
            store.save()


def forwards(apps, schema_editor) -> None:
    _move(apps, schema_editor, old=OLD, new=NEW)


def backwards(apps, schema_editor) -> None:
    _move(apps, schema_editor, old=NEW, new=OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("comparisons", "0008_campaign_precision_stopping_routing"),
        ("sessions", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=True)]

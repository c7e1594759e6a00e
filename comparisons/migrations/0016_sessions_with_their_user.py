"""Sessions move to a table of their own with the signed-in user as a column (`comparisons.models.Session`), so a
request reads its session, user and rater in one statement. Live sessions are copied over as they are (the
session data is signed with the same salt: both stores are named SessionStore), so raters who joined by an invite
link (who have no password to sign in again) keep their rater, pairs and completion code across the upgrade."""

import django.db.models.deletion
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import migrations, models
from django.utils import timezone

SESSION_KEY = "_auth_user_id"  # django.contrib.auth.SESSION_KEY


def _signed_in_user(data: str, users: set[str]) -> str | None:
    user_id = str(SessionStore().decode(data).get(SESSION_KEY, ""))
    return user_id if user_id in users else None


def forwards(apps, schema_editor) -> None:
    if "django.contrib.sessions" not in settings.INSTALLED_APPS:
        return
    Old, New = apps.get_model("sessions", "Session"), apps.get_model("comparisons", "Session")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    users = {str(pk) for pk in User.objects.values_list("pk", flat=True)}
    live = Old.objects.filter(expire_date__gt=timezone.now())
    New.objects.bulk_create(
        [
            New(session_key=old.session_key, session_data=old.session_data, expire_date=old.expire_date,
                user_id=_signed_in_user(old.session_data, users))
            for old in live.iterator()
        ],  # fmt: skip
        batch_size=1000,
        ignore_conflicts=True,
    )


def backwards(apps, schema_editor) -> None:
    if "django.contrib.sessions" not in settings.INSTALLED_APPS:
        return
    Old, New = apps.get_model("sessions", "Session"), apps.get_model("comparisons", "Session")
    Old.objects.bulk_create(
        [
            Old(session_key=new.session_key, session_data=new.session_data, expire_date=new.expire_date)
            for new in New.objects.filter(expire_date__gt=timezone.now()).iterator()
        ],
        batch_size=1000,
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("comparisons", "0015_unique_rater_comparison_rater_first"),
        ("sessions", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Session",
            fields=[
                (
                    "session_key",
                    models.CharField(max_length=40, primary_key=True, serialize=False, verbose_name="session key"),
                ),
                ("session_data", models.TextField(verbose_name="session data")),
                ("expire_date", models.DateTimeField(db_index=True, verbose_name="expire date")),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"verbose_name": "session", "verbose_name_plural": "sessions", "abstract": False},
        ),
        migrations.RunPython(forwards, backwards),
    ]

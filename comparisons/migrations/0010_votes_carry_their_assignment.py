"""Votes carry their assignment's comparison, rater, left/right order and routing probability, so a campaign's
votes are read from one table (see `Vote`). Existing votes are filled from their assignments in one UPDATE."""

from django.db import migrations, models
from django.db.models.deletion import CASCADE

COPIED = ("comparison_id", "rater_id", "left_is_a", "routing_probability")


def fill(apps, schema_editor) -> None:
    vote = apps.get_model("comparisons", "Vote")._meta
    assignment = apps.get_model("comparisons", "Assignment")._meta
    quote = schema_editor.connection.ops.quote_name
    columns = ", ".join(f"{quote(c)} = a.{quote(c)}" for c in COPIED)
    with schema_editor.connection.cursor() as cursor:
        # UPDATE ... FROM: PostgreSQL, and SQLite since 3.33.
        cursor.execute(
            f"UPDATE {quote(vote.db_table)} SET {columns} FROM {quote(assignment.db_table)} a "  # noqa: S608 - names from _meta
            f"WHERE a.{quote('id')} = {quote(vote.db_table)}.{quote(vote.get_field('assignment').column)}"
        )


class Migration(migrations.Migration):
    dependencies = [("comparisons", "0009_sessions_of_the_moved_auth_backend")]

    operations = [
        migrations.AddField(
            "vote",
            "comparison",
            models.ForeignKey(
                "comparisons.comparison", on_delete=CASCADE, related_name="+", editable=False, null=True
            ),
        ),
        migrations.AddField(
            "vote",
            "rater",
            models.ForeignKey("comparisons.rater", on_delete=CASCADE, related_name="+", editable=False, null=True),
        ),
        migrations.AddField("vote", "left_is_a", models.BooleanField(editable=False, null=True)),
        migrations.AddField(
            "vote", "routing_probability", models.FloatField(blank=True, editable=False, null=True)
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            "vote",
            "comparison",
            models.ForeignKey("comparisons.comparison", on_delete=CASCADE, related_name="+", editable=False),
        ),
        migrations.AlterField(
            "vote",
            "rater",
            models.ForeignKey("comparisons.rater", on_delete=CASCADE, related_name="+", editable=False),
        ),
        migrations.AlterField("vote", "left_is_a", models.BooleanField(editable=False)),
    ]

"""Votes carry their comparison's campaign, so a rater's votes in a campaign are one index range (see `Vote`).
Existing votes are filled from their comparisons in one UPDATE."""

from django.db import migrations, models
from django.db.models.deletion import CASCADE


def fill(apps, schema_editor) -> None:
    vote = apps.get_model("comparisons", "Vote")._meta
    comparison = apps.get_model("comparisons", "Comparison")._meta
    quote = schema_editor.connection.ops.quote_name
    campaign = quote(vote.get_field("campaign").column)
    with schema_editor.connection.cursor() as cursor:
        # UPDATE ... FROM: PostgreSQL, and SQLite since 3.33.
        cursor.execute(
            f"UPDATE {quote(vote.db_table)} SET {campaign} = c.{quote(comparison.get_field('campaign').column)} "  # noqa: S608 - names from _meta
            f"FROM {quote(comparison.db_table)} c "
            f"WHERE c.{quote('id')} = {quote(vote.db_table)}.{quote(vote.get_field('comparison').column)}"
        )


class Migration(migrations.Migration):
    dependencies = [("comparisons", "0011_vote_blocks")]

    operations = [
        migrations.AddField(
            "vote",
            "campaign",
            models.ForeignKey(
                editable=False, null=True, on_delete=CASCADE, related_name="+", to="comparisons.campaign"
            ),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            "vote",
            "campaign",
            models.ForeignKey(editable=False, on_delete=CASCADE, related_name="+", to="comparisons.campaign"),
        ),
        migrations.AddIndex("vote", models.Index(fields=["rater", "campaign"], name="vote_rater_campaign")),
    ]

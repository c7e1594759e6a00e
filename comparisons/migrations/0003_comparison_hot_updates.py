"""The rater loop's comparison table: votes_count out of every index.

On PostgreSQL the comparison table also leaves a third of each page free, so the
update of votes_count that every vote makes can stay on its page (a HOT update,
which writes no index entries).
"""

from django.db import migrations


def comparison_fillfactor(apps, schema_editor, value: int = 70) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE comparisons_comparison SET (fillfactor = {int(value)})")


def default_fillfactor(apps, schema_editor) -> None:
    comparison_fillfactor(apps, schema_editor, value=100)


class Migration(migrations.Migration):
    dependencies = [
        ("comparisons", "0002_analyst_group"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="comparison",
            name="comparisons_campaig_c3cca9_idx",
        ),
        migrations.RunPython(comparison_fillfactor, default_fillfactor),
    ]

"""Frozen result snapshots: "Publish" freezes the votes, the analysis and a manifest of hashes under a stable URL;
the bundle reproduces its analysis exactly with `analyze --snapshot`; later votes never change it; a snapshot row
cannot be updated, not even by SQL."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from comparisons import services
from comparisons.models import Campaign, ResultSnapshot, SnapshotImmutable, Vote
from comparisons.results import campaign_analysis
from comparisons.stats.snapshot import votes_digest
from generation.models import ModelEntry, Response
from tests.comparisons.factories import MODEL_NAMES, build_campaign, invite_rater, make_user

pytestmark = pytest.mark.django_db
ZEBRA, QUOKKA = MODEL_NAMES


def vote_all(campaign: Campaign, rater=None, *, pick: str = ZEBRA, limit: int | None = None) -> None:
    """One rater votes for ``pick`` on every pair it is served (at most ``limit``); ties on odd prompts."""
    rater = rater or invite_rater(campaign)
    done = 0
    while (limit is None or done < limit) and (a := services.assignment_next(rater=rater, campaign=campaign)):
        left = a.comparison.response_a if a.left_is_a else a.comparison.response_b
        choice = "tie" if a.comparison.prompt.position % 2 else ("A" if left.model.name == pick else "B")
        services.vote_cast(rater=rater, token=a.token, choice=choice)
        done += 1


@pytest.fixture
def campaign() -> Campaign:
    campaign = build_campaign(slug="frozen", n_prompts=12, k=3)
    # Provenance the manifest must carry: zebra's weights, quokka's imported outputs file.
    ModelEntry.objects.filter(name=ZEBRA).update(kind=ModelEntry.Kind.CHECKPOINT, weights_sha256="ab" * 32, seed=7)
    ModelEntry.objects.filter(name=QUOKKA).update(kind=ModelEntry.Kind.IMPORTED)
    Response.objects.filter(model__name=QUOKKA).update(
        generator_config={"source": "imported", "outputs_sha256": "cd" * 32, "format": "alpaca_eval"}
    )
    vote_all(campaign)
    vote_all(campaign, pick=QUOKKA, limit=5)
    return campaign


@pytest.fixture
def analyst(client):
    user = make_user("ana")
    services.user_make_analyst(user=user)
    client.force_login(user)
    return client


def publish(client, campaign: Campaign, **form) -> ResultSnapshot:
    response = client.post(reverse("comparisons:snapshot_publish", args=[campaign.slug]), form)
    assert response.status_code == 302, response.content
    snapshot = ResultSnapshot.objects.order_by("-number").first()
    assert response["Location"] == f"/campaigns/{campaign.slug}/snapshots/{snapshot.number}/"
    return snapshot


def download(client, campaign: Campaign, number: int, tmp_path: Path) -> Path:
    response = client.get(reverse("comparisons:snapshot_bundle", args=[campaign.slug, number]))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="{campaign.slug}-snapshot-{number}.zip"'
    path = tmp_path / f"{campaign.slug}-snapshot-{number}.zip"
    path.write_bytes(response.content)
    return path


def analyze_snapshot(path: Path, *extra: str) -> str:
    out = io.StringIO()
    call_command("analyze", "--snapshot", str(path), *extra, stdout=out)
    return out.getvalue()


def test_a_published_bundle_reproduces_its_analysis_exactly(analyst, campaign, tmp_path):
    snapshot = publish(analyst, campaign)
    assert snapshot.number == 1 and snapshot.votes_count == Vote.objects.count() == 12 * 1 + 5
    page = analyst.get(f"/campaigns/{campaign.slug}/snapshots/1/").content.decode()
    assert f"Model {QUOKKA} wins" in page and snapshot.votes_sha256 in page
    bundle = download(analyst, campaign, 1, tmp_path)
    with zipfile.ZipFile(bundle) as archive:
        names = sorted(archive.namelist())
        published = archive.read("frozen-snapshot-1/analysis.json").decode()
    assert names == [f"frozen-snapshot-1/{n}" for n in ("analysis.json", "manifest.json", "votes.csv")]
    assert analyze_snapshot(bundle, "--json") == published
    assert "checks out: 17 votes with sha256" in analyze_snapshot(bundle)
    # The same numbers as the results page with the same options.
    assert json.loads(published)["pairs"] == campaign_analysis(campaign=campaign, use_cache=False)["pairs"]
    # The same snapshot always downloads as the same bytes.
    assert download(analyst, campaign, 1, tmp_path / "..").read_bytes() == bundle.read_bytes()


def test_the_manifest_records_votes_models_options_and_code(analyst, campaign, settings):
    settings.MIN_SECONDS_PER_VOTE = 0.5  # the test's votes come in milliseconds apart: keep some
    Vote.objects.filter(pk__in=Vote.objects.order_by("pk").values("pk")[:10]).update(seconds=1.0)
    snapshot = publish(analyst, campaign, exclude_flagged="1")
    manifest = json.loads(snapshot.manifest)
    votes = Vote.objects.filter(assignment__comparison__is_attention_check=False)
    assert manifest["votes_sha256"] == votes_digest(*zip(*votes.values_list("pk", "choice"), strict=True))
    models = {m["name"]: m for m in manifest["models"]}
    assert models[ZEBRA]["checkpoint_sha256"] == "ab" * 32 and models[ZEBRA]["decoding"]["seed"] == 7
    assert models[QUOKKA]["outputs_sha256"] == ["cd" * 32] and models[QUOKKA]["decoding"] is None
    options = manifest["analysis_options"]
    assert options["exclude_flagged"] is True and options["min_seconds"] == 0.5 and options["n_boot"] == 1000
    assert manifest["code_version"] and manifest["code_version"] != "unknown"
    assert manifest["url"] == "/campaigns/frozen/snapshots/1/" and manifest["published_by"] == "ana"
    analysis = json.loads(snapshot.analysis_json)
    assert analysis["votes"]["used"] == 10 and analysis["votes"]["excluded"] == 7  # the fast ones left out
    # Each row of the bundled votes is the vote it names.
    for row in csv.DictReader(io.StringIO(snapshot.votes_csv)):
        vote = Vote.objects.select_related("assignment__rater__user").get(pk=int(row["vote_id"]))
        assert (vote.choice, vote.assignment.rater.user.username) == (row["choice"], row["rater"])


def test_later_votes_never_change_a_snapshot_and_a_new_one_is_published_beside_it(analyst, campaign, tmp_path):
    first = publish(analyst, campaign)
    before = download(analyst, campaign, 1, tmp_path).read_bytes()
    vote_all(campaign, pick=QUOKKA)  # a third rater fills the remaining pairs
    assert Vote.objects.count() > first.votes_count
    (tmp_path / "again").mkdir()
    assert download(analyst, campaign, 1, tmp_path / "again").read_bytes() == before
    second = publish(analyst, campaign)
    assert second.number == 2 and second.votes_count == Vote.objects.count()
    assert second.votes_sha256 != first.votes_sha256
    assert analyze_snapshot(download(analyst, campaign, 2, tmp_path), "--json") == second.analysis_json
    page = analyst.get(reverse("comparisons:results", args=[campaign.slug])).content.decode()
    assert "Snapshot 1</a>" in page and "Snapshot 2</a>" in page
    assert "1 later snapshot exists" in analyst.get("/campaigns/frozen/snapshots/1/").content.decode()


def rewrite(bundle: Path, target: Path, change) -> Path:
    """A copy of ``bundle`` whose files went through ``change(files) -> files``."""
    with zipfile.ZipFile(bundle) as archive:
        files = {name.rsplit("/", 1)[1]: archive.read(name).decode() for name in archive.namelist()}
    files = change(files)
    with zipfile.ZipFile(target, "w") as archive:
        for name, text in files.items():
            archive.writestr(f"x/{name}", text)
    return target


def with_hash(files: dict, name: str, text: str) -> dict:
    from comparisons.stats.snapshot import sha256_text

    manifest = json.loads(files["manifest.json"])
    manifest["files"][name] = sha256_text(text)
    return {**files, name: text, "manifest.json": json.dumps(manifest)}


def test_an_altered_bundle_is_refused_with_what_differs(analyst, campaign, tmp_path):
    publish(analyst, campaign)
    bundle = download(analyst, campaign, 1, tmp_path)

    def flip_first_vote(files):
        rows = list(csv.reader(io.StringIO(files["votes.csv"])))
        header = rows[0]
        winner, a, b = header.index("winner"), header.index("model_a"), header.index("model_b")
        rows[1][winner] = rows[1][b] if rows[1][winner] == rows[1][a] else rows[1][a]
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        return out.getvalue()

    cases = {
        "votes.csv has sha256": lambda f: {**f, "votes.csv": flip_first_vote(f)},
        "The votes' ids and choices hash to": lambda f: with_hash(
            f, "votes.csv", f["votes.csv"].replace(",left\n", ",right\n", 1)
        ),
        "differs from analysis.json": lambda f: with_hash(f, "votes.csv", flip_first_vote(f)),
        "lacks analysis.json": lambda f: {k: v for k, v in f.items() if k != "analysis.json"},
    }
    for i, (message, change) in enumerate(cases.items()):
        with pytest.raises(CommandError, match=message):
            analyze_snapshot(rewrite(bundle, tmp_path / f"bad{i}.zip", change))
    (tmp_path / "not.zip").write_text("hello")
    with pytest.raises(CommandError, match="is neither a zip file nor a folder"):
        analyze_snapshot(tmp_path / "not.zip")
    with pytest.raises(CommandError, match="either a vote file or --snapshot"):
        call_command("analyze", "votes.csv", "--snapshot", str(bundle))


def test_a_snapshot_cannot_be_changed_by_the_model_the_queryset_or_sql(analyst, campaign):
    snapshot = publish(analyst, campaign)
    snapshot.analysis_json = "{}"
    with pytest.raises(SnapshotImmutable):
        snapshot.save()
    with pytest.raises(SnapshotImmutable):
        ResultSnapshot.objects.filter(pk=snapshot.pk).update(votes_count=0)
    table = ResultSnapshot._meta.db_table
    with pytest.raises(DatabaseError, match="cannot be changed"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET votes_count = 0 WHERE id = %s", [snapshot.pk])  # noqa: S608
    snapshot.refresh_from_db()
    assert snapshot.votes_count == 17 and snapshot.analysis_json != "{}"


def test_publishing_without_votes_is_refused_and_writes_nothing(analyst):
    campaign = build_campaign(slug="empty", n_prompts=2, k=1)
    response = analyst.post(reverse("comparisons:snapshot_publish", args=[campaign.slug]))
    assert response.status_code == 409 and "has no votes yet" in response.content.decode()
    assert not ResultSnapshot.objects.exists()


def test_raters_cannot_reach_snapshots(rater_client, campaign, analyst):
    publish(analyst, campaign)
    rater = rater_client(campaign)
    for url in ("/campaigns/frozen/snapshots/1/", "/campaigns/frozen/snapshots/1/bundle.zip"):
        assert rater.get(url).status_code == 403
    assert rater.post("/campaigns/frozen/snapshots/publish").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_publishing_in_its_own_transaction_reads_one_consistent_view(tmp_path):
    """Outside any transaction (as in a request) publishing opens its own, REPEATABLE READ on PostgreSQL."""
    campaign = build_campaign(slug="own-transaction", n_prompts=4, k=1)
    vote_all(campaign)
    assert not connection.in_atomic_block
    first = services.snapshot_publish(campaign=campaign, published_by="cli")
    second = services.snapshot_publish(campaign=campaign)
    assert (first.number, second.number) == (1, 2)
    assert first.votes_sha256 == second.votes_sha256 and first.analysis_json == second.analysis_json
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name, text in (
        ("manifest.json", first.manifest),
        ("votes.csv", first.votes_csv),
        ("analysis.json", first.analysis_json),
    ):
        (folder / name).write_text(text, encoding="utf-8")
    assert analyze_snapshot(folder, "--json") == first.analysis_json  # an unpacked bundle checks out too

"""Kept pair sums per tag and per UTC day (tag and since boards fitted from them, not from a
GROUP BY over the battles); stored boards lose their ledger mark and counts."""

from datetime import UTC
from typing import Any

from django.db import migrations, models
from django.db.models import Sum
from django.db.models.functions import TruncDate


def refill(apps: Any, schema_editor: Any) -> None:
    """The sums of the existing ledger (arena.services.pair_tallies_rebuild, frozen here); the
    stored boards are dropped (their since keys are now days)."""
    battle = apps.get_model("arena", "Battle")
    tally = apps.get_model("arena", "PairTally")
    daily = apps.get_model("arena", "DailyPairTally")
    apps.get_model("arena", "Leaderboard").objects.all().delete()
    tally.objects.all().delete()
    per_day = battle.objects.annotate(day=TruncDate("cast_at", tzinfo=UTC))
    grouped = ("user_id", "day", "model_a", "model_b", "result")
    untagged = per_day.values_list(*grouped).annotate(n=Sum("delta"), v=Sum("votes")).order_by()
    tagged = (
        per_day.filter(comparison__tags__isnull=False)
        .values_list("comparison__tags__name", *grouped)
        .annotate(n=Sum("delta"), v=Sum("votes"))
        .order_by()
    )
    sums: dict[tuple[Any, ...], list[int]] = {}
    for tag, user_id, day, a, b, result, n, v in [("", *row) for row in untagged] + list(tagged):
        for scope in ("*", f"u:{user_id}"):
            for period in (None, day):
                total = sums.setdefault((scope, tag, period, a, b, result), [0, 0])
                total[0] += n
                total[1] += v
    kept = [(key, total) for key, total in sums.items() if total[0] or total[1]]
    tally.objects.bulk_create(
        [
            tally(scope=s, tag=t, model_a=a, model_b=b, result=r, battles=n, votes=v)
            for (s, t, d, a, b, r), (n, v) in kept
            if d is None
        ],
        batch_size=1000,
    )
    daily.objects.bulk_create(
        [
            daily(scope=s, tag=t, day=d, model_a=a, model_b=b, result=r, battles=n, votes=v)
            for (s, t, d, a, b, r), (n, v) in kept
            if d is not None
        ],
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("arena", "0002_pair_tally"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="pairtally", name="pair_tally_key"),
        migrations.AddField(
            model_name="pairtally",
            name="tag",
            field=models.CharField(blank=True, default="", help_text="'' for any.", max_length=40),
        ),
        migrations.AddConstraint(
            model_name="pairtally",
            constraint=models.UniqueConstraint(
                fields=("scope", "tag", "model_a", "model_b", "result"), name="pair_tally_key"
            ),
        ),
        migrations.CreateModel(
            name="DailyPairTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("scope", models.CharField(max_length=300)),
                ("tag", models.CharField(blank=True, default="", max_length=40)),
                ("day", models.DateField(help_text="The UTC date of the battles' cast_at.")),
                ("model_a", models.CharField(max_length=320)),
                ("model_b", models.CharField(max_length=320)),
                (
                    "result",
                    models.CharField(
                        choices=[("a", "A"), ("b", "B"), ("tie", "Tie"), ("bothBad", "Both Bad")],
                        max_length=8,
                    ),
                ),
                ("battles", models.BigIntegerField(default=0)),
                ("votes", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("scope", "tag", "day", "model_a", "model_b", "result"),
                        name="daily_pair_tally_key",
                    )
                ],
            },
        ),
        migrations.RemoveField(model_name="leaderboard", name="mark"),
        migrations.RemoveField(model_name="leaderboard", name="counts"),
        migrations.RunPython(refill, migrations.RunPython.noop),
    ]

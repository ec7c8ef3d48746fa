"""PinnerSage on the synthetic demo world: 3 medoids against single-embedding users, and user_medoids speed.

    .venv/bin/python bench/pinnersage.py            # the recorded run (2,000 users per slice)
    .venv/bin/python bench/pinnersage.py --quick    # 200 users per slice; records nothing

Reads (never writes) the lake of ``make demo`` (``$EMB_LAKE_URI``, default ./var/lake) at ``--ds``:
``events`` of the ``--window-days`` (30) days up to ``ds`` (all the demo has), ``pin_embeddings`` of ``ds``
(the demo's PinSage champion, 3 epochs, d=256), ``synthetic_pin_topics`` (planted primary topic of each pin)
and ``synthetic_users`` (planted ``num_interests`` of each user).

Quality (issue 5, "Bars", synthetic hard bars): positive engagements (``engagement.positive_mask``) on
pins with an embedding, labelled by the nightly ``TimeSplit`` at ``ds`` (valid 7 days, test 7 days);
``EvaluationData`` in window mode (every new pin of the slice is a target, the history masked, full ranking
over all embedded pins), a seeded sample of ``--max-users`` users per slice. ``PinnerSageEvaluator`` scores
PinnerSage (top 3 medoids, max blend, alpha tuned on VALID), the centroid ablation (alpha tuned on VALID),
the last pin, the time-decayed average and k-means (k tuned on VALID); TEST is scored once with each
choice: recall@10/50/100 and topic entropy@50 (bits). Spearman of PinnerSage's clusters per TEST user (at
its chosen alpha, on the test history) against the planted number of interests.

Speed: ``user_medoids`` users/s for users of 50, 200 and 500 actions (random unit vectors, d=256, ages
uniform over 90 days, one BLAS thread, best of 3 passes), as the script of docs/PINNERSAGE.md.

Not measured here: HetRec Last.fm, and the Spark job on 100k users (the issue's 15-minute bar).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import record  # noqa: E402
from embeddings.data.engagement import TEST, TRAIN, VALID, TimeSplit, positive_mask  # noqa: E402
from embeddings.data.schemas import (  # noqa: E402
    EVENTS,
    PIN_EMBEDDINGS,
    SYNTHETIC_PIN_TOPICS,
    SYNTHETIC_USERS,
)
from embeddings.lake import Lake  # noqa: E402
from embeddings.pinnersage.evaluation import (  # noqa: E402
    ALPHA_GRID,
    KMEANS_KS,
    EvaluationData,
    MethodResult,
    PinnerSageEvaluator,
    clusters_vs_interests,
    results_table,
)
from embeddings.pinnersage.medoids import user_medoids  # noqa: E402

log = logging.getLogger("bench.pinnersage")

DEFAULT_DS = "2026-11-01"
REPORTED = ("recall@10", "recall@50", "recall@100", "topic_entropy@50")
SINGLE_EMBEDDING = ("last_pin", "decayed_average")
SPEED_USERS = {50: 400, 200: 150, 500: 60}  # users timed per action count (as docs/PINNERSAGE.md)
SPEARMAN_BAR = 0.5


# ---- inputs -------------------------------------------------------------------------------------


def load_inputs(lake: Lake, ds: dt.date, window_days: int, holdout_days: int, max_users: int, seed: int,
                ) -> tuple[EvaluationData, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """The positive engagements on embedded pins, labelled by the time split, and the planted truth.

    Returns:
        ``(data, pin_vectors (N, d) float32, item_topics (N,) int64, user_ids (U,) int64 (row -> id),
        planted_interests (U,) int64 (-1 where unknown), stats)``.
    """
    split = TimeSplit(ds=ds, window_days=window_days, valid_days=holdout_days, test_days=holdout_days)
    events, days = lake.read_range(EVENTS, split.start, ds,
                                   columns=["user_id", "pin_id", "action", "ts", "duration_ms"])
    if not events.num_rows:
        raise ValueError(f"no events partitions in {split.start}..{ds} in the lake {lake.lake_uri}")
    emb = lake.read(PIN_EMBEDDINGS, ds, columns=["pin_id", "embedding", "model_version"])
    pin_ids = emb.column("pin_id").to_numpy().astype(np.int64)
    order = np.argsort(pin_ids, kind="stable")
    pin_ids = pin_ids[order]
    flat = emb.column("embedding").combine_chunks().flatten().to_numpy().astype(np.float32)
    pin_vectors = flat.reshape(len(order), -1)[order]
    versions = sorted(set(emb.column("model_version").to_pylist()))

    topics = lake.read(SYNTHETIC_PIN_TOPICS, columns=["pin_id", "primary_topic"])
    topic_pins = topics.column("pin_id").to_numpy().astype(np.int64)
    pos = np.searchsorted(pin_ids, topic_pins).clip(0, len(pin_ids) - 1)
    item_topics = np.full(len(pin_ids), -1, np.int64)
    hit = pin_ids[pos] == topic_pins
    item_topics[pos[hit]] = topics.column("primary_topic").to_numpy()[hit]
    if (item_topics < 0).any():
        raise ValueError(f"{int((item_topics < 0).sum())} embedded pins have no planted topic in "
                         f"synthetic_pin_topics (e.g. pin ids {pin_ids[item_topics < 0][:10].tolist()})")

    actions = events.column("action").to_numpy(zero_copy_only=False)
    duration = events.column("duration_ms").to_numpy(zero_copy_only=False)
    positive = positive_mask(actions, duration)
    ev_users = events.column("user_id").to_numpy()[positive].astype(np.int64)
    ev_pins = events.column("pin_id").to_numpy()[positive].astype(np.int64)
    ts = events.column("ts").to_numpy()[positive].astype("datetime64[us]")
    rows = np.searchsorted(pin_ids, ev_pins).clip(0, len(pin_ids) - 1)
    embedded = pin_ids[rows] == ev_pins
    user_ids, users = np.unique(ev_users[embedded], return_inverse=True)
    users = users.ravel().astype(np.int64)
    rows, ts = rows[embedded], ts[embedded]
    labels = split.assign(ts.astype("datetime64[D]"))

    planted_table = lake.read(SYNTHETIC_USERS, columns=["user_id", "num_interests"])
    planted_ids = planted_table.column("user_id").to_numpy().astype(np.int64)
    planted_order = np.argsort(planted_ids)
    planted_ids = planted_ids[planted_order]
    planted_counts = planted_table.column("num_interests").to_numpy().astype(np.int64)[planted_order]
    at = np.searchsorted(planted_ids, user_ids).clip(0, max(len(planted_ids) - 1, 0))
    planted = np.where(planted_ids[at] == user_ids, planted_counts[at], -1) if len(planted_ids) else \
        np.full(len(user_ids), -1)

    describe = (f"TimeSplit at {ds} (window {window_days} days from {split.start}, valid {split.valid_start}.."
                f"{split.test_start - dt.timedelta(days=1)}, test {split.test_start}..{ds})")
    data = EvaluationData(num_items=len(pin_ids), users=users, items=rows, ts=ts, labels=labels,
                          split={"valid": describe.replace("TimeSplit", "time split valid"),
                                 "test": describe.replace("TimeSplit", "time split test")},
                          mode="window", max_users=max_users, seed=seed)
    stats = {
        "events_days": [str(days[0]), str(days[-1]), len(days)],
        "events": events.num_rows,
        "positive_events": int(positive.sum()),
        "positive_events_without_embedding": int((~embedded).sum()),
        "positive_events_used": int(embedded.sum()),
        "per_slice": {"train": int((labels == TRAIN).sum()), "valid": int((labels == VALID).sum()),
                      "test": int((labels == TEST).sum())},
        "users": len(user_ids),
        "users_without_planted_interests": int((planted < 0).sum()),
        "pins": len(pin_ids),
        "embedding_dim": int(pin_vectors.shape[1]),
        "pin_embeddings_model_version": versions,
        "topics": int(len(np.unique(item_topics))),
    }
    log.info("inputs: %s", stats)
    return data, pin_vectors, item_topics, user_ids, planted, stats


# ---- quality ------------------------------------------------------------------------------------


def test_means(methods: Sequence[MethodResult]) -> dict[str, dict]:
    """Per method: its chosen setting, the VALID tuning scores, TEST means of ``REPORTED`` and the seconds."""
    out = {}
    for m in methods:
        test = m.results["test"]
        out[m.name] = {
            "setting": repr(m.setting),
            "valid_tuning_recall@50": [[repr(s), round(float(v), 5)] for s, v in m.tuning],
            "valid_recall@50": float(m.results["valid"].metric("recall@50").mean()),
            "test": {name: float(np.nanmean(test.metric(name))) for name in REPORTED},
            "test_users": test.num_queries,
            "test_clusters_per_user_median": float(np.median(m.num_clusters["test"])),
            "seconds": round(m.seconds, 1),
        }
    return out


def format_means(means: dict[str, dict]) -> str:
    """A Markdown table: method, chosen setting, TEST means (recall x100; entropy in bits)."""
    lines = ["| method | setting (chosen on VALID) | " + " | ".join(REPORTED) + " |",
             "|" + "---|" * (2 + len(REPORTED))]
    for name, m in means.items():
        cells = [f"{100 * m['test'][r]:.2f}" if r.startswith("recall") else f"{m['test'][r]:.3f}"
                 for r in REPORTED]
        lines.append(f"| {name} | {m['setting']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- speed --------------------------------------------------------------------------------------


def speed_curve(passes: int = 3, seed: int = 0) -> dict[str, dict]:
    """users/s of ``user_medoids`` per action count m (random unit vectors d=256; best of ``passes``)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    ds = dt.date(2026, 10, 1)
    end = np.datetime64("2026-10-02T00:00:00", "us")
    out = {}
    with threadpool_limits(limits=1):
        for m, num_users in SPEED_USERS.items():
            users = []
            for _ in range(num_users):
                x = rng.standard_normal((m, 256)).astype(np.float32)
                x /= np.linalg.norm(x, axis=1, keepdims=True)
                ts = end - rng.integers(1, 90 * 86_400_000_000, m).astype("timedelta64[us]")
                users.append((rng.integers(0, 10**9, m), ts, x))
            user_medoids(*users[0], ds)  # warm-up
            best = float("inf")
            for _ in range(passes):
                t0 = time.perf_counter()
                for pins, ts, x in users:
                    result = user_medoids(pins, ts, x, ds)
                best = min(best, time.perf_counter() - t0)
            out[str(m)] = {"users": num_users, "users_per_s": round(num_users / best, 1),
                           "ms_per_user": round(1000 * best / num_users, 3),
                           "clusters_last_user": int(result.num_clusters)}
            log.info("user_medoids m=%d: %.1f users/s (%.2f ms/user)", m, num_users / best, 1000 * best / num_users)
    return out


# ---- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 users per slice; records nothing")
    parser.add_argument("--lake", default=os.environ.get("EMB_LAKE_URI", str(REPO_ROOT / "var" / "lake")))
    parser.add_argument("--ds", default=DEFAULT_DS)
    parser.add_argument("--window-days", type=int, default=30, help="the demo lake holds 30 days of events")
    parser.add_argument("--holdout-days", type=int, default=7, help="days of the valid and of the test slice")
    parser.add_argument("--max-users", type=int, default=2000, help="seeded sample of users per slice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ci-samples", type=int, default=1000, help="bootstrap resamples of the table's CIs")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_users = 200
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    command = " ".join([".venv/bin/python", "bench/pinnersage.py", *(argv if argv is not None else sys.argv[1:])])
    ds = dt.date.fromisoformat(args.ds)

    data, pin_vectors, item_topics, user_ids, planted, stats = load_inputs(
        Lake(args.lake), ds, args.window_days, args.holdout_days, args.max_users, args.seed)
    evaluator = PinnerSageEvaluator(data, pin_vectors, item_topics=item_topics)
    methods = [evaluator.pinnersage(), evaluator.centroid(), evaluator.last_pin(), evaluator.decayed_average(),
               evaluator.kmeans(seed=args.seed)]
    quality_s = time.perf_counter() - started
    table = results_table(methods, ci_samples=args.ci_samples, seed=args.seed)
    means = test_means(methods)

    pinnersage = methods[0]
    test_users = pinnersage.results["test"].query_ids
    known = planted[test_users] >= 0
    rho = clusters_vs_interests(pinnersage.num_clusters["test"][known], planted[test_users][known])
    speed_started = time.perf_counter()
    speed = speed_curve(seed=args.seed)
    speed_s = time.perf_counter() - speed_started
    wall_s = time.perf_counter() - started

    ps50 = means["pinnersage"]["test"]["recall@50"]
    checks = {
        "3 medoids beat every single-embedding baseline (last pin, decayed average) on held-out recall@50":
            bool(all(ps50 > means[b]["test"]["recall@50"] for b in SINGLE_EMBEDDING)),
        f"Spearman(clusters per user, planted interests) >= {SPEARMAN_BAR}": bool(rho.rho >= SPEARMAN_BAR),
    }
    test = table[table["split"] == "test"]
    print("\nTEST, every metric (settings chosen on VALID; 95% bootstrap CI over users):\n")
    print(test.pivot_table(index=["model", "setting"], columns="metric", values="value").round(4).to_string())
    means_md = format_means(means)
    print("\nTEST means (recall x100, entropy in bits):\n\n" + means_md)
    print(f"\nSpearman clusters per user vs planted interests (alpha {pinnersage.setting}, {rho.num_users} test "
          f"users): rho {rho.rho:.3f} (p {rho.pvalue:.2g})")
    print("\nuser_medoids speed: " + ", ".join(f"m={m}: {s['users_per_s']} users/s" for m, s in speed.items()))
    print("\nBars:\n" + "\n".join(f"  {'MET    ' if ok else 'NOT MET'}  {name}" for name, ok in checks.items()))
    print(f"\nwall {wall_s:.0f} s (quality {quality_s:.0f} s, speed {speed_s:.0f} s)")
    if args.quick:
        print("--quick: nothing recorded")
        return

    metrics = {
        "data": stats,
        "test_means": means,
        "table": [{k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in row.items()}
                  for row in table.to_dict(orient="records")],
        "spearman_clusters_vs_planted_interests": {
            "rho": rho.rho, "pvalue": rho.pvalue, "users": rho.num_users, "alpha": pinnersage.setting,
            "clusters_per_user": {"median": float(np.median(pinnersage.num_clusters["test"])),
                                  "p90": float(np.percentile(pinnersage.num_clusters["test"], 90))},
            "planted_interests_median": float(np.median(planted[test_users][known])),
        },
        "speed_user_medoids": speed,
        "bars": checks,
        "wall_seconds": round(wall_s, 1),
        "quality_seconds": round(quality_s, 1),
        "speed_seconds": round(speed_s, 1),
    }
    config = {"ds": args.ds, "window_days": args.window_days, "holdout_days": args.holdout_days,
              "max_users_per_slice": args.max_users, "seed": args.seed, "mode": "window",
              "alpha_grid": list(ALPHA_GRID), "kmeans_ks": list(KMEANS_KS), "num_query_vectors": 3,
              "blend": "max", "lam_per_day": evaluator.lam, "max_actions": evaluator.max_actions,
              "tuning_metric": evaluator.tuning_metric, "ci_samples": args.ci_samples,
              "speed": {"users_per_m": SPEED_USERS, "dim": 256, "passes": 3, "blas_threads": 1}}
    lines = [f"TEST means (recall x100, topic entropy@50 in bits; settings chosen on VALID; "
             f"{means['pinnersage']['test_users']} test users):\n\n" + means_md + "\n",
             f"Spearman(PinnerSage clusters per test user at alpha {pinnersage.setting}, planted num_interests) = "
             f"{rho.rho:.3f} over {rho.num_users} users",
             "user_medoids speed (one process, 1 BLAS thread, d=256 random unit vectors): "
             + ", ".join(f"m={m}: {s['users_per_s']} users/s ({s['ms_per_user']} ms/user)" for m, s in speed.items()),
             "synthetic hard bars: " + "; ".join(f"{name}: {'HOLDS' if ok else 'DOES NOT HOLD'}"
                                                  for name, ok in checks.items()),
             "not measured here: HetRec Last.fm, and the 100k-user job's 15-minute bar",
             f"wall time {wall_s / 60:.1f} min"]
    record(name="pinnersage", command=command,
           dataset=f"synthetic demo world of `make demo` in the lake {args.lake} at ds={args.ds}: "
                   f"{stats['events']} events over {stats['events_days'][2]} days, {stats['pins']} pins with "
                   f"PinSage embeddings ({', '.join(stats['pin_embeddings_model_version'])}, d="
                   f"{stats['embedding_dim']}), {stats['topics']} planted topics, {stats['users']} users with "
                   f"positive engagements",
           protocol="PinSage embeddings are the demo's 3-epoch champion (not a fully trained model). Positive "
                    "engagements (engagement.positive_mask) on embedded pins, TimeSplit at ds (window 30 days, "
                    "valid 7 days, test 7 days); user future window: every new pin of the slice is a target, "
                    "the history (everything before the slice) masked, full ranking over all embedded pins; "
                    f"a seeded sample of {args.max_users} users per slice; alpha (PinnerSage, centroid) and k "
                    "(k-means) tuned on VALID recall@50, TEST scored once (embeddings.pinnersage.evaluation). "
                    "Spearman on PinnerSage's clusters per test user (chosen alpha, test history) vs "
                    "synthetic_users.num_interests. HetRec Last.fm and the 100k-user job timing are NOT measured "
                    "here.",
           config=config, metrics=metrics, summary=lines)


if __name__ == "__main__":
    main()

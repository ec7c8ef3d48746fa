"""PinnerSage quality (synthetic demo world, HetRec Last.fm) against single-embedding users, and speed.

    .venv/bin/python bench/pinnersage.py                          # the recorded run: every section
    .venv/bin/python bench/pinnersage.py --quick                  # 200 users per slice, 1 epoch; records nothing
    .venv/bin/python bench/pinnersage.py --sections synthetic     # one section: bench/results/pinnersage_synthetic.json

Sections (``--sections``, default all three; a run of all writes bench/results/pinnersage.json, a run of
some ``pinnersage_<sections>.json``, and appends an entry to docs/BENCHMARKS.md):

* ``synthetic`` (issue 5, "Bars", the hard bars) on a synthetic world at ``--ds``: ``--world 90d`` (the
  default) is `make demo`'s preset over 90 days, the job's own window, built once by the nightly stages
  (``WORLD_STAGES``, no Airflow; about 24 minutes on 2 cores) into ``--world-dir`` (default
  var/bench/pinnersage-world-90d) and reused; ``--world demo`` reads (never writes) the lake of ``make demo``
  (``--lake``, default ``$EMB_LAKE_URI`` or ./var/lake; 30 days; recorded as
  ``pinnersage_synthetic_demo_world``). It reads ``events`` of the ``--window-days`` (90 / 30) days up to
  ``ds``, ``pin_embeddings`` of ``ds`` (the PinSage champion: 3 epochs),
  ``synthetic_pin_topics`` and ``synthetic_users`` (planted truth), loaded by
  ``embeddings.pinnersage.data.load_evaluation_inputs`` as the nightly evaluation does: positive
  engagements on embedded pins, the nightly ``TimeSplit`` (valid 7 days, test 7 days), user future window
  (every new pin of the slice is a target, history masked, full ranking), ``--max-users`` per slice.
* ``hetrec``: HetRec Last.fm imported and split per user (``engagement.split_per_user``) and PinSage
  (importance pooling, ``Variant``'s default loss, now the sampled softmax, which takes no hard negatives;
  seed 0, ``--hetrec-epochs`` with early stopping) trained on its
  TRAIN saves, both by ``bench/pinsage_quality.py``'s functions (``public_inputs``, ``train_and_embed``);
  the same evaluation over every user with a held-out save (no planted truth: no entropy, no Spearman).
* ``speed``: ``user_medoids`` users/s for users of 50, 200 and 500 actions (random unit vectors, d=256,
  ages uniform over 90 days, one BLAS thread, best of 3 passes), as the script of docs/PINNERSAGE.md.

Quality: ``embeddings.pinnersage.evaluation.compare_methods``: PinnerSage (top 3 medoids by importance,
one nearest-neighbour list per medoid interleaved with importance-proportional shares:
``embeddings.pinnersage.retrieval``), the centroid ablation, the medoids under the other blends (max of
cosines, importance-weighted sum, round robin), the last pin, the time-decayed average and k-means with a
fixed k. Alpha (and k), the importance decay lam (``--lams``, default ``LAM_GRID``; the decayed
average's too) and the pull of the queries toward the corpus direction (``--pulls``, default ``PULL_GRID``,
every method alike: ``embeddings.pinnersage.retrieval.pull_queries``) are tuned on VALID recall@50 per
method; TEST is scored once with each choice.
The bar is read on the means and, separately, beyond noise: a paired bootstrap over the test users of the
3 medoids minus each single-embedding baseline (``paired_comparison``), overall and, on synthetic data, per
planted number of interests, beside the share of each group's targets that their own 3 most frequent topics
hold (``top_topic_coverage``: the most 3 single-topic queries could cover).
Spearman of PinnerSage's clusters per TEST user (chosen alpha, test history) against the planted number of
interests; reported also at the job's alpha (``DEFAULT_ALPHA``, the clusters of the nightly table) on the
same histories and at every alpha of the grid (on the VALID histories) to show the trade-off.

Not measured here: the whole Spark job on 100k users (bench/pinnersage_scale.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import record  # noqa: E402
from embeddings.data.engagement import TimeSplit  # noqa: E402
from embeddings.lake import Lake  # noqa: E402
from embeddings.pinnersage.data import load_evaluation_inputs  # noqa: E402
from embeddings.pinnersage.evaluation import (  # noqa: E402
    ALPHA_GRID,
    DEFAULT_BLEND,
    KMEANS_KS,
    LAM_GRID,
    PULL_GRID,
    SINGLE_EMBEDDING_METHODS,
    EvaluationData,
    MethodResult,
    PinnerSageEvaluator,
    ablation_table,
    clusters_vs_interests,
    compare_methods,
    paired_comparison,
    pinnersage_vectors,
    results_table,
    top_topic_coverage,
)
from embeddings.pinnersage.medoids import DEFAULT_ALPHA, user_medoids  # noqa: E402

log = logging.getLogger("bench.pinnersage")

SECTIONS = ("synthetic", "hetrec", "speed")
DEFAULT_DS = "2026-11-01"
REPORTED = ("recall@10", "recall@50", "recall@100")
SPEED_USERS = {50: 400, 200: 150, 500: 60}  # users timed per action count (as docs/PINNERSAGE.md)
SPEARMAN_BAR = 0.5


# ---- quality ------------------------------------------------------------------------------------


def format_ablation(table: pd.DataFrame) -> str:
    """A Markdown table of ``ablation_table``: recall x100, entropy in bits, on-interest share of the top 50."""
    metrics = [c for c in table.columns if c.startswith("test_")
               and c not in ("test_users", "test_clusters_per_user_median")]
    head = ["method", "blend", "setting (VALID)", "clusters/user (median)"] + [m[5:] for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.to_dict(orient="records"):
        cells = [r["method"], r["blend"], r["setting"], f"{r['test_clusters_per_user_median']:g}"]
        cells += [f"{100 * r[m]:.2f}" if "recall" in m else f"{r[m]:.3f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quality_bars(table: pd.DataFrame, paired: pd.DataFrame) -> dict[str, bool]:
    """3 medoids (PinnerSage's blend) beat every single-embedding baseline on TEST recall@50: on the means,
    and beyond noise (the paired bootstrap's 95% interval of the difference above zero)."""
    r50 = table.set_index("method")["test_recall@50"]
    overall = paired[paired["group"] == "all"]
    return {"3 medoids beat every single-embedding baseline (last pin, decayed average) on held-out recall@50":
            bool(all(r50["pinnersage"] > r50[b] for b in SINGLE_EMBEDDING_METHODS)),
            "... beyond noise (paired bootstrap over test users, 95% interval above 0)":
            bool(overall["beats"].all())}


def _verdict(bars: dict[str, bool]) -> str:
    """``quality_bars`` in words: ahead on the means, and beyond noise or not."""
    on_means, beyond_noise = bars.values()
    return "yes, beyond noise" if beyond_noise else "on the means only, not beyond noise" if on_means else "no"


def format_paired(paired: pd.DataFrame, coverage: dict[str, float] | None = None,
                  group_label: str = "planted interests") -> str:
    """A Markdown table of ``paired_comparison`` (recall x100), one row per group (headed ``group_label``),
    one column per baseline; with ``coverage``, the mean top-3 topic coverage of each group's targets."""
    others = list(dict.fromkeys(paired["other"]))
    head = [group_label, "test users", "3 medoids"] + [f"minus {o} [95% CI]" for o in others]
    if coverage is not None:
        head.append("targets in their top 3 topics")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group, rows in paired.groupby("group", sort=False):
        rows = rows.set_index("other")
        first = rows.iloc[0]
        cells = [group, str(first["users"]), f"{100 * first['reference_mean']:.2f}"]
        cells += [f"{100 * rows.loc[o, 'diff']:+.2f} [{100 * rows.loc[o, 'ci_low']:+.2f}, "
                  f"{100 * rows.loc[o, 'ci_high']:+.2f}] (vs {100 * rows.loc[o, 'other_mean']:.2f})" for o in others]
        if coverage is not None:
            cells.append(f"{coverage[group]:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_section(evaluator: PinnerSageEvaluator, args: argparse.Namespace,
                     groups: np.ndarray | None = None) -> tuple[list[MethodResult], dict]:
    """``compare_methods`` on one dataset: the methods, the ablation table, the full evaluation table and
    the paired comparison of the 3 medoids with each single-embedding baseline on TEST recall@50 (also per
    ``groups`` label of the user rows when given)."""
    started = time.perf_counter()
    methods = compare_methods(evaluator, alphas=args.alphas, seed=args.seed)
    ablation = ablation_table(methods)
    table = results_table(methods, ci_samples=args.ci_samples, seed=args.seed)
    paired = paired_comparison(methods, "pinnersage", SINGLE_EMBEDDING_METHODS, groups=groups,
                               ci_samples=max(args.ci_samples, 200), seed=args.seed)
    out = {
        "ablation": _records(ablation),
        "ablation_markdown": format_ablation(ablation),
        "tuning": {m.name: [[repr(s), round(float(v), 5)] for s, v in m.tuning] for m in methods},
        "table": _records(table),
        "paired_recall@50": _records(paired),
        "bars": quality_bars(ablation, paired),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print("\n" + out["ablation_markdown"])
    return methods, out


def _records(table: pd.DataFrame) -> list[dict]:
    return [{k: (v if not isinstance(v, float) or np.isfinite(v) else None) for k, v in row.items()}
            for row in table.to_dict(orient="records")]


def spearman_by_alpha(evaluator: PinnerSageEvaluator, planted: np.ndarray) -> list[dict]:
    """Spearman of clusters per VALID user against planted interests at every alpha of the grid (the
    validation histories; diagnostic only, nothing is chosen by it)."""
    s = evaluator.slices["valid"]
    users = s.users()
    known = users[planted[users] >= 0]
    out = []
    for alpha in ALPHA_GRID:
        vectors = pinnersage_vectors(s.history, evaluator.pin_vectors, known, alpha=alpha, lam=evaluator.lam,
                                     max_actions=evaluator.max_actions)
        clusters = vectors.num_clusters[known]
        rho = clusters_vs_interests(clusters, planted[known])
        out.append({"alpha": alpha, "rho": round(rho.rho, 4), "clusters_median": float(np.median(clusters))})
    return out


# The world of the synthetic bars: `make demo`'s preset over the job's 90-day window, built by the nightly
# stages (no Airflow) into its own var directory, with its own MLflow store (`infra/local/env.sh`).
WORLD_DAYS = 90
WORLD_STAGES = (
    ("jobs.generate_synthetic", "--scale", "demo", "--num-days", str(WORLD_DAYS)),
    ("jobs.validate_inputs",),
    ("jobs.build_features",),
    ("jobs.build_graph", "--holdout-days", "7"),
    ("jobs.ppr_neighborhoods",),
    ("jobs.train_pinsage", "--valid-days", "7", "--test-days", "7", "--num-epochs", "3"),
    ("jobs.evaluate_pinsage", "--valid-days", "7", "--test-days", "7"),
    ("jobs.infer_pinsage",),
)


def world_lake(args: argparse.Namespace) -> str:
    """The lake of the synthetic section: ``--world demo`` reads ``--lake`` (`make demo`'s 30 days);
    ``--world 90d`` builds (once; reused when its ``pin_embeddings`` of ds exist) the 90-day world under
    ``--world-dir`` with the nightly stages, each logged with its time."""
    if args.world == "demo":
        return args.lake
    from embeddings.data.schemas import PIN_EMBEDDINGS

    var_dir = Path(args.world_dir).resolve()
    lake_uri = str(var_dir / "lake")
    if Path(lake_uri).exists() and Lake(lake_uri).exists(PIN_EMBEDDINGS, args.ds):
        log.info("reusing the %d-day world in %s", WORLD_DAYS, var_dir)
        return lake_uri
    var_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMB_", "MLFLOW_"))}
    env["EMB_VAR_DIR"] = str(var_dir)
    started = time.perf_counter()
    for module, *stage_args in WORLD_STAGES:
        command = " ".join(["python", "-m", module, "--ds", args.ds, *stage_args])
        log.info("%d-day world: %s (%.0f s so far)", WORLD_DAYS, command, time.perf_counter() - started)
        with open(var_dir / "world-build.log", "a") as out:
            proc = subprocess.run(["bash", "-c", f"source infra/local/env.sh && {command}"], cwd=REPO_ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
        if proc.returncode:
            raise RuntimeError(f"building the {WORLD_DAYS}-day world failed at `{command}` (exit {proc.returncode}); "
                               f"log: {var_dir / 'world-build.log'}")
    log.info("%d-day world built in %.0f s: %s", WORLD_DAYS, time.perf_counter() - started, lake_uri)
    return lake_uri


def bench_synthetic(args: argparse.Namespace) -> dict:
    ds = dt.date.fromisoformat(args.ds)
    lake = world_lake(args)
    window_days = args.window_days or (WORLD_DAYS if args.world == "90d" else 30)
    split = TimeSplit(ds=ds, window_days=window_days, valid_days=args.holdout_days, test_days=args.holdout_days)
    inputs = load_evaluation_inputs(Lake(lake), split, max_users=args.max_users, seed=args.seed)
    if inputs.item_topics is None or inputs.planted_interests is None:
        raise ValueError(f"the lake {lake} has no synthetic_pin_topics / synthetic_users: not a synthetic lake")
    evaluator = PinnerSageEvaluator(inputs.data, inputs.pin_vectors, item_topics=inputs.item_topics, lams=args.lams,
                                    pulls=args.pulls,
                                    user_interests=inputs.user_interests, pin_topics=inputs.pin_topics)
    planted = inputs.planted_interests
    methods, out = evaluate_section(evaluator, args, groups=planted)
    pinnersage = methods[0]
    test_users = pinnersage.results["test"].query_ids
    # The ceiling of any 3 single-topic queries: the share of each test user's targets in the 3 topics most
    # frequent among those targets (planted primary topics), per planted interest count.
    coverage = top_topic_coverage(evaluator.slices["test"].targets.targets, test_users, inputs.item_topics)
    out["top3_topic_coverage"] = {"all": float(coverage.mean())} | {
        str(g): float(coverage[planted[test_users] == g].mean()) for g in np.unique(planted[test_users]) if g >= 0}
    out["paired_markdown"] = format_paired(pd.DataFrame(out["paired_recall@50"]), out["top3_topic_coverage"])
    print("\nTEST recall@50 x100 of the 3 medoids and paired differences, by planted interests:\n"
          + out["paired_markdown"])
    known = planted[test_users] >= 0
    rho = clusters_vs_interests(pinnersage.num_clusters["test"][known], planted[test_users][known])
    out["spearman_clusters_vs_planted_interests"] = {
        "rho": rho.rho, "pvalue": rho.pvalue, "users": rho.num_users,
        "alpha": pinnersage.setting.alpha, "lam": pinnersage.setting.lam, "pull": pinnersage.setting.pull,
        "clusters_per_user": {"median": float(np.median(pinnersage.num_clusters["test"])),
                              "p90": float(np.percentile(pinnersage.num_clusters["test"], 90))},
        "planted_interests_median": float(np.median(planted[test_users][known])),
    }
    # The job's own alpha (fixed beforehand, on the 30-day world's calibration in docs/PINNERSAGE.md) on the
    # same test histories: the clusters the nightly user_medoids table holds, which validation does not pick.
    test_slice = evaluator.slices["test"]
    job_users = test_users[known]
    job_clusters = pinnersage_vectors(test_slice.history, evaluator.pin_vectors, job_users, alpha=DEFAULT_ALPHA,
                                      lam=evaluator.lam, max_actions=evaluator.max_actions).num_clusters[job_users]
    job_rho = clusters_vs_interests(job_clusters, planted[job_users])
    out["spearman_at_job_alpha"] = {"rho": job_rho.rho, "pvalue": job_rho.pvalue, "users": job_rho.num_users,
                                    "alpha": DEFAULT_ALPHA, "clusters_median": float(np.median(job_clusters))}
    out["spearman_by_alpha_valid"] = spearman_by_alpha(evaluator, planted)
    out["bars"][f"Spearman(clusters per user, planted interests) >= {SPEARMAN_BAR}"] = bool(rho.rho >= SPEARMAN_BAR)
    out["data"] = inputs.stats
    out["world"] = {"world": args.world, "lake": lake, "window_days": window_days}
    print(f"\nSpearman clusters per test user vs planted interests ({pinnersage.setting!r}, {rho.num_users} "
          f"users): rho {rho.rho:.3f}")
    print(f"... at the job's alpha {DEFAULT_ALPHA} (same test histories): rho {job_rho.rho:.3f}")
    print("Spearman by alpha (VALID histories): " + ", ".join(f"{r['alpha']}: {r['rho']:.3f}"
                                                              for r in out["spearman_by_alpha_valid"]))
    return out


def bench_hetrec(args: argparse.Namespace) -> dict:
    """PinSage trained on HetRec's TRAIN saves (bench/pinsage_quality.py), then the same comparison."""
    from bench import pinsage_quality as pq
    from embeddings.graph.walks import WalkConfig
    from embeddings.pinsage.training import TrainingOptions

    walk = WalkConfig(num_steps=args.ppr_steps, top_t=50, band=(200, 500), num_band_samples=20)
    inputs, saves = pq.public_inputs(Path(args.hetrec_path), walk, 31 * pq.DAY_S, 0)
    options = TrainingOptions(num_epochs=args.hetrec_epochs, patience=2, num_workers=1, log_every_s=30.0)
    variant = pq.Variant("pinsage importance", "importance", True, (args.seed,))
    with tempfile.TemporaryDirectory() as tmp:
        vectors, training = pq.train_and_embed(inputs, variant, args.seed, options, (256, 256), Path(tmp))

    # The labelled saves public_inputs split (user row, pin row, time, label), as PinnerSage's evaluation data.
    data = EvaluationData(num_items=saves.num_items, users=saves.users, items=saves.items, ts=saves.ts,
                          labels=saves.labels, split={"valid": "per-user split valid (last 20% before test)",
                                                      "test": "per-user split test (each user's last 20% of saves)"},
                          mode="window", max_users=args.max_users, seed=args.seed)
    evaluator = PinnerSageEvaluator(data, vectors, lams=args.lams, pulls=args.pulls)
    _, out = evaluate_section(evaluator, args)
    out["paired_markdown"] = format_paired(pd.DataFrame(out["paired_recall@50"]), group_label="users")
    print("\nTEST recall@50 x100 of the 3 medoids and paired differences:\n" + out["paired_markdown"])
    out["data"] = inputs.stats
    out["pinsage_training"] = training
    return out


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
    parser.add_argument("--quick", action="store_true", help="200 users per slice, 1 HetRec epoch; records nothing")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--lake", default=os.environ.get("EMB_LAKE_URI", str(REPO_ROOT / "var" / "lake")))
    parser.add_argument("--ds", default=DEFAULT_DS)
    parser.add_argument("--world", choices=("90d", "demo"), default="90d",
                        help="synthetic section: the 90-day world (built once into --world-dir) or --lake")
    parser.add_argument("--world-dir", default=str(REPO_ROOT / "var" / "bench" / "pinnersage-world-90d"))
    parser.add_argument("--window-days", type=int, default=0,
                        help="events window of the synthetic section (default: 90 for --world 90d, 30 for demo)")
    parser.add_argument("--holdout-days", type=int, default=7, help="days of the valid and of the test slice")
    parser.add_argument("--max-users", type=int, default=2000, help="seeded sample of users per slice")
    parser.add_argument("--hetrec-path", default="/work/shared/data/hetrec2011-lastfm-2k")
    parser.add_argument("--hetrec-epochs", type=int, default=6, help="PinSage epoch cap on HetRec (patience 2)")
    parser.add_argument("--ppr-steps", type=int, default=5_000, help="PPR walk steps per pin on HetRec")
    parser.add_argument("--alphas", type=float, nargs="+", default=ALPHA_GRID, help="Ward thresholds tried on VALID")
    parser.add_argument("--lams", type=float, nargs="+", default=LAM_GRID,
                        help="importance decays per day tried on VALID (PinnerSage, decayed average, k-means)")
    parser.add_argument("--pulls", type=float, nargs="+", default=PULL_GRID,
                        help="pulls of the queries toward the corpus direction tried on VALID (every method)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ci-samples", type=int, default=1000, help="bootstrap resamples of the table's CIs")
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if args.quick:
        args.max_users, args.hetrec_epochs, args.ci_samples = 200, 1, 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    command = " ".join([".venv/bin/python", "bench/pinnersage.py", *(argv if argv is not None else sys.argv[1:])])

    metrics: dict = {}
    if "synthetic" in sections:
        metrics["synthetic"] = bench_synthetic(args)
    if "hetrec" in sections:
        metrics["hetrec_lastfm"] = bench_hetrec(args)
    if "speed" in sections:
        t0 = time.perf_counter()
        metrics["speed_user_medoids"] = speed_curve(seed=args.seed)
        metrics["speed_seconds"] = round(time.perf_counter() - t0, 1)
        print("\nuser_medoids speed: " + ", ".join(f"m={m}: {s['users_per_s']} users/s"
                                                    for m, s in metrics["speed_user_medoids"].items()))
    wall_s = time.perf_counter() - started
    metrics["wall_seconds"] = round(wall_s, 1)
    checks = metrics.get("synthetic", {}).get("bars", {})
    if checks:
        print("\nSynthetic hard bars:\n" + "\n".join(f"  {'MET    ' if ok else 'NOT MET'}  {name}"
                                                    for name, ok in checks.items()))
    print(f"\nwall {wall_s:.0f} s")
    if args.quick:
        print("--quick: nothing recorded")
        return

    config = {"sections": sections, "ds": args.ds, "world": args.world,
              "window_days": metrics.get("synthetic", {}).get("world", {}).get("window_days"),
              "holdout_days": args.holdout_days, "max_users_per_slice": args.max_users, "seed": args.seed,
              "mode": "window", "alpha_grid": list(args.alphas), "kmeans_ks": list(KMEANS_KS),
              "num_query_vectors": 3, "blend": DEFAULT_BLEND, "lam_grid": list(args.lams),
              "pull_grid": list(args.pulls), "max_actions": 500,
              "tuning_metric": "recall@50", "ci_samples": args.ci_samples, "hetrec_epochs_cap": args.hetrec_epochs,
              "speed": {"users_per_m": SPEED_USERS, "dim": 256, "passes": 3, "blas_threads": 1}}
    lines, datasets = [], []
    if "synthetic" in metrics:
        syn = metrics["synthetic"]
        rho = syn["spearman_clusters_vs_planted_interests"]
        stats = syn["data"]
        world = ("`make demo`'s world" if args.world == "demo" else
                 f"`make demo`'s preset over {WORLD_DAYS} days (bench/pinnersage.py --world 90d)")
        datasets.append(f"synthetic: {world} in the lake {syn['world']['lake']} at ds={args.ds}: "
                        f"{stats['events']} events over {stats['events_days'][2]} days, {stats['pins']} pins with "
                        f"PinSage embeddings ({', '.join(stats['pin_embeddings_model_version'])}, d="
                        f"{stats['embedding_dim']}, the demo's 3-epoch champion), {stats['topics']} planted topics, "
                        f"{stats['users']} users with positive engagements")
        lines += [f"synthetic, TEST means (recall x100, topic entropy@50 in bits; settings chosen on VALID):\n\n"
                  + syn["ablation_markdown"] + "\n",
                  "TEST recall@50 x100 of the 3 medoids, paired bootstrap against each single-embedding "
                  "baseline, overall and by planted number of interests (last column: the share of the group's "
                  "targets in their own 3 most frequent topics, the most 3 single-topic queries could cover):\n\n"
                  + syn["paired_markdown"] + "\n",
                  f"Spearman(PinnerSage clusters per test user at alpha {rho['alpha']}, planted num_interests) = "
                  f"{rho['rho']:.3f} over {rho['users']} users; at the job's alpha "
                  f"{syn['spearman_at_job_alpha']['alpha']} on the same histories: "
                  f"{syn['spearman_at_job_alpha']['rho']:.3f}; by alpha on the VALID histories: "
                  + ", ".join(f"{r['alpha']}: {r['rho']:.3f}" for r in syn["spearman_by_alpha_valid"]),
                  "synthetic hard bars: " + "; ".join(f"{name}: {'HOLDS' if ok else 'DOES NOT HOLD'}"
                                                       for name, ok in syn["bars"].items())]
    if "hetrec_lastfm" in metrics:
        het = metrics["hetrec_lastfm"]
        datasets.append(f"HetRec Last.fm ({het['data']['users']} users, {het['data']['pins']} artists, "
                        f"{het['data']['saves']} tag assignments as saves), PinSage trained on its TRAIN saves (best "
                        f"epoch {het['pinsage_training']['best_epoch']} of {het['pinsage_training']['epochs_run']})")
        lines += ["HetRec Last.fm, TEST means (recall x100; settings chosen on VALID):\n\n"
                  + het["ablation_markdown"] + "\n",
                  "HetRec, TEST recall@50 x100 of the 3 medoids, paired bootstrap against each single-embedding "
                  "baseline:\n\n" + het["paired_markdown"] + "\n",
                  "HetRec: 3 medoids beat every single-embedding baseline on recall@50: " + _verdict(het["bars"])]
    if "speed_user_medoids" in metrics:
        lines.append("user_medoids speed (one process, 1 BLAS thread, d=256 random unit vectors): "
                     + ", ".join(f"m={m}: {s['users_per_s']} users/s ({s['ms_per_user']} ms/user)"
                                 for m, s in metrics["speed_user_medoids"].items()))
    lines.append(f"wall time {wall_s / 60:.1f} min")
    name = "pinnersage" if set(sections) == set(SECTIONS) else "pinnersage_" + "_".join(sections)
    if "synthetic" in sections and args.world == "demo":
        name += "_demo_world"  # the 30-day world of `make demo`, recorded beside the 90-day one
    record(name=name, command=command, dataset="; ".join(datasets) or "random unit vectors (speed only)",
           protocol="Positive engagements on embedded pins; "
                    + (f"synthetic: nightly TimeSplit at ds (window {config['window_days']} days, valid "
                       f"{args.holdout_days}, test {args.holdout_days}); " if "synthetic" in sections else "")
                    + ("HetRec: per-user split; " if "hetrec" in sections else "")
                    + "user future window: "
                    "every new pin of the slice is a target, the history masked, full ranking over all embedded "
                    f"pins; a seeded sample of {args.max_users} users per slice. Every method's alpha / k, "
                    "importance decay lam and pull toward the corpus direction (pull_queries; 0 = none) tuned on "
                    "VALID recall@50, TEST scored once "
                    "(embeddings.pinnersage.evaluation.compare_methods). PinnerSage: top 3 medoids by "
                    f"importance, blend {DEFAULT_BLEND!r} (one exact nearest-neighbour list per medoid, shares "
                    "proportional to importance). The 100k-user job timing is bench/pinnersage_scale.py.",
           config=config, metrics=metrics, summary=lines)


if __name__ == "__main__":
    main()

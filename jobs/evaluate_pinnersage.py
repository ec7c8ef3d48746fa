"""Evaluate PinnerSage for one ds against single-embedding users and log the run to MLflow.

In: ``user_medoids`` ds=<ds> (written by ``jobs.pinnersage``: its parameters and counts, and the clusters
per user), ``pin_embeddings`` of ds and the ``events`` of the job's window (the same ``window_days``),
labelled by the nightly ``TimeSplit`` (valid ``valid_days``, test ``test_days``); on a synthetic lake also
``synthetic_pin_topics`` and ``synthetic_users`` (planted truth).
Out: one run per ds in the MLflow experiment ``pinnersage``: the job's parameters and the evaluation's,
the job's counts (users, cluster-count buckets, capped, skipped, carried over) as metrics, the evaluation
table (``embeddings.pinnersage.evaluation.compare_methods``: PinnerSage, the centroid ablation, the other
blends, the last pin, the time-decayed average, k-means; every method tuned on VALID, TEST scored once)
with its protocol, the ablation table (``evaluation/ablation.csv``), a histogram of clusters per user (the
job's output and the evaluated test users), the Spearman correlation of clusters with planted interests on
synthetic data, and lineage tags (ds, input partitions, code version, Airflow ids, PinSage version).

The evaluation clusters each user's history before the held-out slice (the job's ``user_medoids`` include
those days, so they cannot be scored without leaking the targets); it uses the job's cap, chooses alpha and
the importance decay lambda on VALID (``--lams``, default ``LAM_GRID`` plus the job's lambda; the decayed
average and k-means choose theirs the same way), and the pull of every method's queries toward the corpus
direction (``--pulls``, default ``PULL_GRID``), and logs whether those choices differ from the job's.
Nothing is written to the lake; a rerun of the same ds logs a new run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings.data.engagement import TimeSplit
from embeddings.data.schemas import USER_MEDOIDS
from embeddings.lake import Lake, Manifest, parse_ds
from embeddings.settings import Settings

log = logging.getLogger("jobs.evaluate_pinnersage")

EXPERIMENT = "pinnersage"


@dataclass(frozen=True)
class EvaluatePinnerSageConfig:
    """Args:
        lake_uri: the lake with the inputs.
        ds: the day whose ``user_medoids`` partition is evaluated.
        tracking_uri: the MLflow store.
        artifact_root: where a new experiment keeps its artifacts (``Settings.mlflow_artifacts_uri``).
        valid_days, test_days: the time split's held-out slices (the window is the job's ``window_days``).
        max_users: users scored per slice (seeded sample; 0 = all).
        alphas, kmeans_ks: the grids tuned on VALID.
        lams: importance decays per day tuned on VALID (default ``LAM_GRID``); the job's is always tried.
        pulls: pulls of the queries toward the corpus direction tuned on VALID by every method (default
            ``PULL_GRID``; ``embeddings.pinnersage.retrieval.pull_queries``).
        ablation_blends: blends of the medoids reported besides PinnerSage's own.
        ci_samples: bootstrap resamples of the table's confidence intervals (0: none).
        seed: seeds the samples, k-means and the bootstrap.
    """

    lake_uri: str
    ds: dt.date
    tracking_uri: str
    artifact_root: str | None = None
    valid_days: int = 7
    test_days: int = 7
    max_users: int = 2000
    alphas: tuple[float, ...] = field(default=())
    kmeans_ks: tuple[int, ...] = field(default=())
    lams: tuple[float, ...] = field(default=())
    pulls: tuple[float, ...] = field(default=())
    ablation_blends: tuple[str, ...] = ("max", "sum", "round_robin")
    ci_samples: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        from embeddings.pinnersage.evaluation import ALPHA_GRID, KMEANS_KS, LAM_GRID, PINNERSAGE_BLENDS, PULL_GRID

        object.__setattr__(self, "ds", parse_ds(self.ds))
        object.__setattr__(self, "alphas", tuple(self.alphas) or ALPHA_GRID)
        object.__setattr__(self, "kmeans_ks", tuple(self.kmeans_ks) or KMEANS_KS)
        object.__setattr__(self, "lams", tuple(float(v) for v in self.lams) or LAM_GRID)
        object.__setattr__(self, "pulls", tuple(float(v) for v in self.pulls) or PULL_GRID)
        if min(self.valid_days, self.test_days) < 1:
            raise ValueError(f"valid_days and test_days must be >= 1 (got {self.valid_days}, {self.test_days})")
        if self.max_users < 0 or self.ci_samples < 0:
            raise ValueError(f"max_users and ci_samples must be >= 0 (got {self.max_users}, {self.ci_samples})")
        if bad := [b for b in self.ablation_blends if b not in PINNERSAGE_BLENDS]:
            raise ValueError(f"ablation_blends {bad} are not among {PINNERSAGE_BLENDS}")


@dataclass(frozen=True)
class EvaluatePinnerSageResult:
    run_id: str
    alpha_chosen: float
    lam_chosen: float
    table: object = field(repr=False)  # pandas DataFrame: evaluation_table + setting
    ablation: object = field(repr=False)  # pandas DataFrame: ablation_table
    spearman: float | None
    seconds: float


def input_refs(lake_uri: str, manifests: Sequence[Manifest]) -> dict[str, str]:
    """Lineage tag values: one per table, a range for the ``events`` partitions."""
    by_table: dict[str, list[Manifest]] = {}
    for m in manifests:
        by_table.setdefault(m.table, []).append(m)
    refs = {}
    for table, ms in by_table.items():
        ms = sorted(ms, key=lambda m: str(m.ds))
        where = f"{lake_uri.rstrip('/')}/{table}/ds={ms[0].ds}"
        if len(ms) > 1:
            where += f"..{ms[-1].ds} ({len(ms)} partitions)"
        refs[table] = f"{where} rows={sum(m.row_count for m in ms)} created={ms[-1].created_at}"
    return refs


def job_clusters_per_user(lake: Lake, ds: dt.date) -> np.ndarray:
    """(U,) ``num_clusters`` of every user of ``user_medoids`` ds (one value per user, from its rank-1 row)."""
    table = lake.read(USER_MEDOIDS, ds, columns=["rank", "num_clusters"])
    rank = table.column("rank").to_numpy()
    return table.column("num_clusters").to_numpy()[rank == 1].astype(np.int64)


def run(config: EvaluatePinnerSageConfig) -> EvaluatePinnerSageResult:
    from embeddings.pinnersage.data import load_evaluation_inputs
    from embeddings.pinnersage.evaluation import (
        DEFAULT_BLEND,
        SINGLE_EMBEDDING_METHODS,
        PinnerSageEvaluator,
        ablation_table,
        clusters_vs_interests,
        compare_methods,
        paired_comparison,
        results_table,
    )
    from embeddings.pinnersage.plots import plot_clusters_per_user
    from embeddings.registry.tracking import connect, lineage_tags, start_run

    started = time.perf_counter()
    client = connect(config.tracking_uri)  # fail fast, before the evaluation
    lake = Lake(config.lake_uri)
    job_manifest = lake.read_manifest(USER_MEDOIDS, config.ds)  # the job's run of ds must exist
    job = job_manifest.extra or {}
    job_params = job.get("params") or {}
    missing = {"window_days", "alpha", "lam", "max_actions"} - set(job_params)
    if missing:
        raise ValueError(f"the manifest of {lake.describe(USER_MEDOIDS, config.ds)} lacks the job parameters "
                         f"{sorted(missing)}; rerun jobs.pinnersage for ds={config.ds}")
    split = TimeSplit(config.ds, int(job_params["window_days"]), config.valid_days, config.test_days)
    inputs = load_evaluation_inputs(lake, split, max_users=config.max_users, seed=config.seed)
    job_lam = float(job_params["lam"])
    lams = tuple(sorted({*config.lams, job_lam}))
    evaluator = PinnerSageEvaluator(inputs.data, inputs.pin_vectors, item_topics=inputs.item_topics,
                                    user_interests=inputs.user_interests, pin_topics=inputs.pin_topics,
                                    lam=job_lam, lams=lams, pulls=config.pulls,
                                    max_actions=int(job_params["max_actions"]))
    methods = compare_methods(evaluator, alphas=config.alphas, kmeans_ks=config.kmeans_ks,
                              ablation_blends=config.ablation_blends, seed=config.seed)
    table = results_table(methods, ci_samples=config.ci_samples, seed=config.seed)
    ablation = ablation_table(methods)
    pinnersage = methods[0]
    job_clusters = job_clusters_per_user(lake, config.ds)

    # The 3 medoids minus each single-embedding baseline, per test user (and per planted interest count on
    # synthetic data): is PinnerSage ahead beyond noise?
    paired = paired_comparison(methods, pinnersage.name, SINGLE_EMBEDDING_METHODS, groups=inputs.planted_interests,
                               ci_samples=max(config.ci_samples, 200), seed=config.seed)
    overall = paired[paired["group"] == "all"]

    rho = None
    if inputs.planted_interests is not None:
        users = pinnersage.results["test"].query_ids
        known = inputs.planted_interests[users] >= 0
        rho = clusters_vs_interests(pinnersage.num_clusters["test"][known], inputs.planted_interests[users][known])

    tags = lineage_tags(ds=config.ds.isoformat(),
                        input_manifests=input_refs(config.lake_uri, [job_manifest, *inputs.manifests]))
    versions = sorted(set(inputs.model_versions) | {job.get("pinsage_model_version") or ""} - {""})
    tags["pinsage_model_version"] = ",".join(versions)
    with start_run(client, EXPERIMENT, run_name=f"pinnersage ds={config.ds}", tags=tags,
                   artifact_root=config.artifact_root) as tracked:
        tracked.log_params({
            "job": job_params,
            "evaluation": {"valid_days": config.valid_days, "test_days": config.test_days, "mode": "window",
                           "max_users": config.max_users, "alphas": list(config.alphas),
                           "kmeans_ks": list(config.kmeans_ks), "lams": list(lams),
                           "pulls": list(config.pulls), "blend": DEFAULT_BLEND,
                           "ablation_blends": list(config.ablation_blends), "num_query_vectors": 3,
                           "tuning_metric": evaluator.tuning_metric, "ci_samples": config.ci_samples,
                           "seed": config.seed},
        })
        tracked.set_tags({
            "eval.alpha_chosen_on_valid": repr(pinnersage.setting.alpha),
            "eval.alpha_matches_job": str(pinnersage.setting.alpha == float(job_params["alpha"])),
            "eval.lam_chosen_on_valid": repr(pinnersage.setting.lam),
            "eval.lam_matches_job": str(pinnersage.setting.lam == job_lam),
            "eval.pull_chosen_on_valid": repr(pinnersage.setting.pull),
            **{f"eval.setting.{m.name}": repr(m.setting) for m in methods},
            "eval.beats_single_embedding_beyond_noise": str(bool(overall["beats"].all())),
        })
        counts = {k: job[k] for k in ("users", "users_capped", "actions_without_embedding",
                                      "users_skipped_no_embedding", "users_carried_over", "users_recomputed")
                  if isinstance(job.get(k), (int, float))}
        counts.update({f"users_by_num_clusters/{b}": n for b, n in (job.get("users_by_num_clusters") or {}).items()})
        counts["clusters_per_user_median"] = float(np.median(job_clusters))
        tracked.log_metrics(counts, prefix="job")
        tracked.log_evaluation(table)
        tracked.log_metrics({f"{r['method']}/{k}": v for r in ablation.to_dict(orient="records")
                             for k, v in r.items() if k.startswith("test_") and isinstance(v, float)},
                            prefix="ablation")
        if rho is not None:
            tracked.log_metrics({"spearman_clusters_vs_planted_interests": rho.rho})
        tracked.log_metrics({f"{r['other']}/{k}": r[k] for r in overall.to_dict(orient="records")
                             for k in ("diff", "ci_low", "ci_high")}, prefix="paired_recall@50")
        with tempfile.TemporaryDirectory() as tmp:
            paired.to_csv(Path(tmp) / "paired_recall@50.csv", index=False)
            ablation.to_csv(Path(tmp) / "ablation.csv", index=False)
            (Path(tmp) / "ablation.json").write_text(ablation.to_json(orient="records", indent=2))
            tracked.client.log_artifacts(tracked.run_id, tmp, "evaluation")
        with tempfile.TemporaryDirectory() as tmp:
            series = {f"user_medoids ds={config.ds} (alpha {job_params['alpha']})": job_clusters}
            if len(pinnersage.num_clusters["test"]):
                series[f"test users, history before the slice (alpha {pinnersage.setting.alpha:g})"] = \
                    pinnersage.num_clusters["test"]
            tracked.log_figure(plot_clusters_per_user(series, Path(tmp) / "clusters_per_user.png"))
        run_id = tracked.run_id
    seconds = time.perf_counter() - started
    r50 = ablation.set_index("method")["test_recall@50"]
    log.info("PinnerSage ds=%s evaluated in %.0f s (MLflow run %s): test recall@50 %s; chosen on VALID %r "
             "(job: alpha=%s lam=%s)%s", config.ds, seconds, run_id, {k: round(float(v), 4) for k, v in r50.items()},
             pinnersage.setting, job_params["alpha"], job_lam, "" if rho is None else f"; Spearman {rho.rho:.3f}")
    return EvaluatePinnerSageResult(run_id, pinnersage.setting.alpha, pinnersage.setting.lam, table, ablation,
                                    None if rho is None else rho.rho, seconds)


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate_pinnersage", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--tracking-uri", default=settings.mlflow_tracking_uri)
    parser.add_argument("--artifact-root", default=settings.mlflow_artifacts_uri)
    parser.add_argument("--valid-days", type=int, default=7)
    parser.add_argument("--test-days", type=int, default=7)
    parser.add_argument("--max-users", type=int, default=2000)
    parser.add_argument("--ci-samples", type=int, default=200)
    parser.add_argument("--alphas", type=float, nargs="+", default=(), help="Ward thresholds tried on VALID "
                        "(default: embeddings.pinnersage.evaluation.ALPHA_GRID)")
    parser.add_argument("--kmeans-ks", type=int, nargs="+", default=(), help="k-means baseline's k tried on "
                        "VALID (default: KMEANS_KS)")
    parser.add_argument("--lams", type=float, nargs="+", default=(), help="importance decays per day tried on "
                        "VALID (default: LAM_GRID); the job's lambda is always among them")
    parser.add_argument("--pulls", type=float, nargs="+", default=(), help="pulls of every method's queries "
                        "toward the corpus direction tried on VALID (default: PULL_GRID)")
    parser.add_argument("--ablation-blends", nargs="*", default=("max", "sum", "round_robin"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(EvaluatePinnerSageConfig(
        lake_uri=args.lake_uri, ds=args.ds, tracking_uri=args.tracking_uri, artifact_root=args.artifact_root,
        valid_days=args.valid_days, test_days=args.test_days, max_users=args.max_users,
        ci_samples=args.ci_samples, alphas=tuple(args.alphas), kmeans_ks=tuple(args.kmeans_ks),
        lams=tuple(args.lams), pulls=tuple(args.pulls), ablation_blends=tuple(args.ablation_blends), seed=args.seed,
    ))


if __name__ == "__main__":
    main()

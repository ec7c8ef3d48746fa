"""Evaluate the PinSage version trained for one ds against the champion and the baselines; promote or not.

In: the registered model ``pinsage`` (the newest version tagged ``ds=<ds>``, registered by
``jobs.train_pinsage``, and the ``champion`` version when there is one), ``pin_features``,
``ppr_neighbors`` and ``graph_csr`` of ds, and the ``events`` of the training window.
Out: in MLflow, on the challenger's training run: the evaluation table (challenger, champion, content
features, item-kNN, Pixie, popularity; item-to-item and user next-save on the validation and test slices
of the time split, each method tuned on validation), hit-rate@K curves, a 2-D projection of a sample of
embeddings colored by planted topic (synthetic data only), and the promotion decision as version tags;
the ``champion`` alias moves only if the challenger beats the champion beyond noise (a paired bootstrap
over users of test NDCG@10 whose 95% interval lies above the margin; ``embeddings.registry.promotion``).

Nothing is written to the lake. Rerunning for the same ds re-evaluates and, if the version is already the
champion, changes nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings.data.engagement import TRAINING_WINDOW_DAYS, TimeSplit
from embeddings.data.schemas import GRAPH_CSR, SYNTHETIC_PIN_TOPICS
from embeddings.lake import Lake, parse_ds
from embeddings.settings import Settings

log = logging.getLogger("jobs.evaluate_pinsage")

PROMOTION_METRIC = "ndcg@10"


@dataclass(frozen=True)
class EvaluatePinSageConfig:
    """Args:
        lake_uri: the lake with the inputs.
        ds: the day whose challenger is evaluated.
        tracking_uri: the MLflow store (tracking and registry).
        registered_model: the registered model's name.
        max_gap_s, window_days, valid_days, test_days: the split and the item-to-item pairs (as in training).
        max_pairs, max_users: item-to-item pairs and users scored per slice (seeded samples; 0 = all).
        margin: the paired bootstrap's lower bound must exceed this (NDCG@10 units) to promote.
        pixie: evaluate the Pixie baseline too (walks on ``graph_csr``).
        device: where the models embed the pins.
        seed: seeds the samples and the bootstrap.
    """

    lake_uri: str
    ds: dt.date
    tracking_uri: str
    registered_model: str = "pinsage"
    max_gap_s: float = 1800.0
    window_days: int = TRAINING_WINDOW_DAYS
    valid_days: int = 7
    test_days: int = 7
    max_pairs: int = 5000
    max_users: int = 2000
    margin: float = 0.0
    pixie: bool = True
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ds", parse_ds(self.ds))
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")

    @property
    def split(self) -> TimeSplit:
        return TimeSplit(self.ds, self.window_days, self.valid_days, self.test_days)


@dataclass(frozen=True)
class EvaluateResult:
    version: str
    champion_before: str | None
    promoted: bool
    reason: str
    table: object  # pandas DataFrame
    seconds: float


def challenger_for(client, name: str, ds: dt.date, trained_by: str = "jobs.train_pinsage"):
    """The newest version of ``name`` trained for ``ds`` (tag ``ds``); PinnerFormer's evaluation uses it too.

    Raises:
        LookupError: none was registered for ds (``trained_by`` did not run or did not register).
    """
    from embeddings.registry.models import newest_version_tagged

    version = newest_version_tagged(client, name, "ds", ds.isoformat())
    if version is None:
        raise LookupError(f"no version of registered model {name!r} is tagged ds={ds}; run {trained_by} "
                          f"for ds={ds} first")
    return version


def run(config: EvaluatePinSageConfig) -> EvaluateResult:
    from embeddings.eval.bootstrap import paired_values
    from embeddings.eval.plots import plot_embedding_projection, plot_hit_rate_curves
    from embeddings.eval.protocols import format_table
    from embeddings.graph.csr import BipartiteCSR
    from embeddings.pinsage.data import load_pin_graph, rows_of
    from embeddings.pinsage.evaluation import ITEM_TASK, USER_TASK, Evaluator, load_time_split, results_table
    from embeddings.pinsage.inference import embed_all
    from embeddings.pinsage.training import resolve_device
    from embeddings.registry.models import load_model
    from embeddings.registry.promotion import champion_version, promote_if_better
    from embeddings.registry.tracking import TrackedRun, connect

    started = time.perf_counter()
    client = connect(config.tracking_uri)
    name = config.registered_model
    challenger = challenger_for(client, name, config.ds)
    version = str(challenger.version)
    incumbent = champion_version(client, name)
    lake = Lake(config.lake_uri)
    device = resolve_device(config.device)

    models = {f"pinsage challenger v{version}": version}
    if incumbent is not None and incumbent != version:
        models[f"pinsage champion v{incumbent}"] = incumbent
    loaded = {label: load_model(client, name, alias=None, version=v, map_location="cpu") for label, v in models.items()}
    num_neighbors = max(cfg.num_neighbors for _, cfg in loaded.values())
    graph, _ = load_pin_graph(lake, config.ds, num_neighbors)
    embeddings = {}
    for label, (model, model_config) in loaded.items():
        if model_config.in_dim != graph.feature_dim:
            raise ValueError(f"{name} {label} expects {model_config.in_dim}-d features but pin_features ds={config.ds} "
                             f"has {graph.feature_dim}-d; it cannot be compared on this day")
        t = model_config.num_neighbors
        embeddings[label] = embed_all(model.to(device), graph.features, graph.neighbors[:, :t], graph.weights[:, :t],
                                      device=device)

    data = load_time_split(lake, graph.pin_ids, config.split, config.max_gap_s, max_pairs=config.max_pairs,
                           max_users=config.max_users, seed=config.seed)
    evaluator = Evaluator(data)
    methods = [evaluator.embeddings(label, vectors) for label, vectors in embeddings.items()]
    methods.append(evaluator.embeddings("content features", graph.features))
    methods.append(evaluator.item_knn())
    methods.append(evaluator.popularity())
    csr_manifest = lake.read_manifest(GRAPH_CSR, config.ds) if lake.exists(GRAPH_CSR, config.ds) else None
    if config.pixie:
        csr = BipartiteCSR.load(lake.local_path(GRAPH_CSR, config.ds))
        graph_rows = rows_of(graph.pin_ids, csr.pin_ids)
        if (graph_rows < 0).any():
            raise ValueError(f"{int((graph_rows < 0).sum())} graph pins of {lake.describe(GRAPH_CSR, config.ds)} "
                             f"have no content features")
        methods.append(evaluator.pixie(csr, graph_rows, seed=config.seed))
    table = results_table(methods)
    log.info("evaluation for ds=%s:\n%s", config.ds, format_table(table[table["split"] == "test"],
                                                                ["hr@10", "ndcg@10", "hr@100", "hr@500", "mrr"]))

    by_name = {m.name: m for m in methods}
    challenger_users = by_name[next(iter(models))].results[(USER_TASK, "test")]
    if len(models) > 1:
        champion_users = by_name[list(models)[1]].results[(USER_TASK, "test")]
        challenger_values, champion_values = paired_values(challenger_users, champion_users, PROMOTION_METRIC)
    else:
        challenger_values, champion_values = challenger_users.metric(PROMOTION_METRIC), None

    run = TrackedRun(client, challenger.run_id, client.get_run(challenger.run_id).info.experiment_id)
    holdout = int((csr_manifest.extra or {}).get("holdout_days") or 0) if csr_manifest else None
    run.set_tags({
        "eval.graph_holdout_days": str(holdout),
        "eval.graph_covers_test_slice": "unknown" if holdout is None else str(holdout < config.test_days),
        **{f"eval.setting.{m.name}": repr(m.settings) for m in methods},
    })
    if holdout is not None and holdout < config.test_days:
        log.warning("graph_csr ds=%s holds out %d days but the test slice has %d: graph-based methods (PinSage, "
                    "Pixie) saw test-slice saves in their neighborhoods", config.ds, holdout, config.test_days)
    run.log_evaluation(table)
    with tempfile.TemporaryDirectory() as tmp:
        for task in (ITEM_TASK, USER_TASK):
            curves = {m.name: m.results[(task, "test")] for m in methods}
            run.log_figure(plot_hit_rate_curves(curves, Path(tmp) / f"hit_rate_{task}_test.png",
                                                max_k=500 if task == ITEM_TASK else 100))
        if lake.exists(SYNTHETIC_PIN_TOPICS):
            topics = lake.read(SYNTHETIC_PIN_TOPICS, columns=["pin_id", "primary_topic"])
            rows = rows_of(graph.pin_ids, topics.column("pin_id").to_numpy())
            labels = np.full(graph.num_pins, -1)
            labels[rows[rows >= 0]] = topics.column("primary_topic").to_numpy()[rows >= 0]
            label = next(iter(models))
            run.log_figure(plot_embedding_projection(embeddings[label][labels >= 0], labels[labels >= 0],
                                                     Path(tmp) / "embedding_projection.png",
                                                     title=f"{label}: 2-D projection, colored by planted topic"))
            run.log_figure(plot_embedding_projection(graph.features[labels >= 0], labels[labels >= 0],
                                                     Path(tmp) / "content_projection.png",
                                                     title="content features: 2-D projection, colored by planted topic"))
    decision = promote_if_better(client, name, version, challenger_values, champion_values, margin=config.margin,
                                 metric=PROMOTION_METRIC, protocol=challenger_users.protocol, seed=config.seed)
    run.set_tags(decision.tags())
    seconds = time.perf_counter() - started
    log.info("%s version %s: %s (%s) in %.0f s", name, version, "champion" if decision.promoted else "challenger",
             decision.reason, seconds)
    return EvaluateResult(version, incumbent, decision.promoted, decision.reason, table, seconds)


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate_pinsage", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--tracking-uri", default=settings.mlflow_tracking_uri)
    parser.add_argument("--max-gap-s", type=float, default=1800.0)
    parser.add_argument("--valid-days", type=int, default=7)
    parser.add_argument("--test-days", type=int, default=7)
    parser.add_argument("--max-pairs", type=int, default=5000)
    parser.add_argument("--max-users", type=int, default=2000)
    parser.add_argument("--margin", type=float, default=0.0, help="NDCG@10 gain required beyond noise")
    parser.add_argument("--no-pixie", action="store_true")
    parser.add_argument("--device", default=settings.device)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(EvaluatePinSageConfig(
        lake_uri=args.lake_uri, ds=args.ds, tracking_uri=args.tracking_uri, max_gap_s=args.max_gap_s,
        valid_days=args.valid_days, test_days=args.test_days, max_pairs=args.max_pairs, max_users=args.max_users,
        margin=args.margin, pixie=not args.no_pixie, device=args.device,
    ))


if __name__ == "__main__":
    main()

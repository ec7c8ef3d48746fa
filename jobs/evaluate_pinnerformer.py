"""Evaluate the PinnerFormer version trained for one ds against the champion and the baselines; promote or not.

In: the registered model ``pinnerformer`` (the newest version tagged ``ds=<ds>``, registered by
``jobs.train_pinnerformer``, and the ``champion`` version when there is one), ``user_sequences`` of ds
(the held-out users of splits ``valid`` and ``test``, cut at ``cutoff_ts``), ``pin_embeddings`` of ds
(the pin table; it must come from the PinSage version the challenger consumed) and, on synthetic lakes,
``synthetic_pin_topics``.
Out: in MLflow, on the challenger's training run: the evaluation table (challenger, champion, popularity,
PinSage last pin, PinSage time-decayed average, PinnerSage's 3 medoids computed from the input actions
before the cutoff; ``embeddings.pinnerformer.evaluation``: every positive of the 14 days after the cutoff
ranked against all pins, input history masked, baselines tuned on ``valid``, ``test`` scored once), the
recall@K curves, and the promotion decision as version tags. The ``champion`` alias moves only if the
challenger beats the champion beyond noise (a paired bootstrap over test users of recall@10 whose 95%
interval lies above the margin; ``embeddings.registry.promotion``). A champion made from another PinSage
version than today's ``pin_embeddings`` cannot serve with them (inference refuses to mix versions): it is
replaced by the challenger without a comparison, and the decision says so.

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings.lake import Lake, parse_ds
from embeddings.settings import Settings
from jobs.evaluate_pinsage import challenger_for

log = logging.getLogger("jobs.evaluate_pinnerformer")

PROMOTION_METRIC = "recall@10"
PINSAGE_VERSION_TAG = "pinsage_model_version"


@dataclass(frozen=True)
class EvaluatePinnerFormerConfig:
    """Args:
        lake_uri: the lake with the inputs.
        ds: the day whose challenger is evaluated.
        tracking_uri: the MLflow store (tracking and registry).
        registered_model: the registered model's name.
        max_users: held-out users scored per split (a seeded sample of those with a future positive; 0 = all).
        margin: the paired bootstrap's lower bound must exceed this (recall@10 units) to promote.
        popularity_days, last_pin_histories, decay_lams, pinnersage_alphas: the baselines' settings tried on
            ``valid`` (``embeddings.pinnerformer.evaluation``).
        replace_stale_champion: a champion of another PinSage version is replaced without a comparison
            (False: refuse, with an error).
        ci_samples: bootstrap resamples of the table's per-metric intervals (0: none).
        device: where the models embed.
        num_threads: torch's CPU threads (0: torch's default; 1 on a small machine shared with other tasks).
        seed: seeds the samples and the bootstraps.
    """

    lake_uri: str
    ds: dt.date
    tracking_uri: str
    registered_model: str = "pinnerformer"
    max_users: int = 2000
    margin: float = 0.0
    popularity_days: tuple[int, ...] = field(default=())
    last_pin_histories: tuple[str, ...] = field(default=())
    decay_lams: tuple[float, ...] = field(default=())
    pinnersage_alphas: tuple[float, ...] = field(default=())
    replace_stale_champion: bool = True
    ci_samples: int = 200
    device: str = "auto"
    num_threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        from embeddings.pinnerformer import evaluation as ev

        object.__setattr__(self, "ds", parse_ds(self.ds))
        for name, default in (("popularity_days", ev.POPULARITY_DAYS), ("last_pin_histories", ev.LAST_PIN_HISTORIES),
                              ("decay_lams", ev.DECAY_LAMS), ("pinnersage_alphas", ev.PINNERSAGE_ALPHAS)):
            object.__setattr__(self, name, tuple(getattr(self, name)) or default)
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if min(self.max_users, self.ci_samples, self.num_threads) < 0:
            raise ValueError(f"max_users, ci_samples and num_threads must be >= 0, got {self.max_users}, "
                             f"{self.ci_samples} and {self.num_threads}")
        if bad := sorted(set(self.last_pin_histories) - set(ev.LAST_PIN_HISTORIES)):
            raise ValueError(f"last_pin_histories {bad} are not among {ev.LAST_PIN_HISTORIES}")


@dataclass(frozen=True)
class EvaluateResult:
    version: str
    champion_before: str | None
    promoted: bool
    reason: str
    table: object = field(repr=False)  # pandas DataFrame
    seconds: float = 0.0


def check_pinsage_version(name: str, version, pins_version: str, where: str) -> None:
    """Raise unless model ``version`` consumed the PinSage version of the pin table.

    Raises:
        ValueError: the version has no ``pinsage_model_version`` tag or another value (both named).
    """
    consumed = version.tags.get(PINSAGE_VERSION_TAG)
    if consumed != pins_version:
        raise ValueError(f"{name} version {version.version} consumed {consumed or 'an unrecorded PinSage version'} "
                         f"but {where} holds {pins_version}; a model is only evaluated and promoted with the pin "
                         f"embeddings of the PinSage version it was trained on (retrain it for ds with them)")


def replace_stale_champion(client, name: str, version: str, incumbent: str, consumed: str, pins_version: str,
                           *, protocol: str, num_users: int, seed: int):
    """Make ``version`` the champion in place of ``incumbent``, which consumed another PinSage version.

    The decision is recorded as ``promotion.*`` tags like ``promote_if_better``'s (no comparison was made).
    """
    from embeddings.registry.models import CHALLENGER, CHAMPION, set_alias
    from embeddings.registry.promotion import TAG_PREFIX, Decision

    reason = (f"champion v{incumbent} consumed {consumed}, the pin embeddings are {pins_version}: it cannot serve "
              f"with them, so it is replaced without a comparison")
    decision = Decision(name=name, version=str(version), promoted=True, reason=reason, incumbent=incumbent,
                        metric=PROMOTION_METRIC, protocol=protocol, num_users=num_users, seed=seed)
    set_alias(client, name, CHALLENGER, version)
    for key, value in decision.tags().items():
        client.set_model_version_tag(name, version, key, value)
    set_alias(client, name, CHAMPION, version)
    client.set_model_version_tag(name, incumbent, f"{TAG_PREFIX}replaced_by", str(version))
    log.warning("%s version %s: %s", name, version, reason)
    return decision


def compare_methods(lake: Lake, config: EvaluatePinnerFormerConfig, pins, loaded: dict, device) -> tuple[list, object, dt.datetime]:
    """Score the ``loaded`` PinnerFormer models (label -> model with its pin table attached) and the baselines
    on the held-out users of ``user_sequences`` ds (``embeddings.pinnerformer.evaluation``).

    Returns:
        (the methods' results, models first in the order given; the results table; the cutoff).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from embeddings.data.schemas import PIN_EMBEDDINGS, SYNTHETIC_PIN_TOPICS, USER_SEQUENCES
    from embeddings.eval.protocols import format_table
    from embeddings.pinnerformer import evaluation as ev
    from embeddings.pinnerformer.data import SequenceOptions
    from embeddings.pinnerformer.lake import read_user_sequences, sequences_from_table
    from embeddings.pinnerformer.training import embed_all_pins, embed_users
    from jobs.train_pinnerformer import label_days_of

    pins_where = lake.describe(PIN_EMBEDDINGS, config.ds)
    table = read_user_sequences(lake, config.ds)
    manifest = lake.read_manifest(USER_SEQUENCES, config.ds)
    label_days = label_days_of(manifest)
    cutoff_values = pc.unique(table.column("cutoff_ts")).to_pylist()
    if len(cutoff_values) != 1:
        raise ValueError(f"{lake.describe(USER_SEQUENCES, config.ds)} has {len(cutoff_values)} cutoffs; the "
                         f"evaluation needs one cutoff for every user")
    cutoff = cutoff_values[0]
    cutoff_s = int(cutoff.timestamp())
    history_length = int((manifest.extra or {}).get("max_length") or 256)

    def sequences(split: str | None, max_length: int):
        rows = table if split is None else table.filter(pc.equal(table.column("split"), pa.scalar(split)))
        return sequences_from_table(rows, pins.pin_ids, mode="eval", options=SequenceOptions(
            max_length=max_length, window_days=label_days))

    description = ev.describe_window(cutoff, label_days)
    slices = {}
    for split in ev.SPLITS:
        seqs, user_ids = sequences(split, history_length)
        slices[split] = ev.future_window_slice(split, seqs, user_ids, description=description,
                                               max_users=config.max_users, seed=config.seed)
        if not len(slices[split].users()):
            raise ValueError(f"{lake.describe(USER_SEQUENCES, config.ds)}: no {split} user has a positive action "
                             f"after the cutoff {cutoff}; nothing to evaluate")
    item_topics = None
    if lake.exists(SYNTHETIC_PIN_TOPICS):
        topics = lake.read(SYNTHETIC_PIN_TOPICS, columns=["pin_id", "primary_topic"])
        topic_ids = topics.column("pin_id").to_numpy().astype(np.int64)
        order = np.argsort(topic_ids)
        at = np.searchsorted(topic_ids[order], pins.pin_ids).clip(0, max(len(topic_ids) - 1, 0))
        found = topic_ids[order][at] == pins.pin_ids if len(topic_ids) else np.zeros(pins.num_pins, bool)
        if not found.all():
            raise ValueError(f"{int((~found).sum())} pins of {pins_where} have no planted topic in "
                             f"synthetic_pin_topics")
        item_topics = topics.column("primary_topic").to_numpy().astype(np.int64)[order][at]
    evaluator = ev.FutureWindowEvaluator(slices, pins.vectors, item_topics=item_topics)

    methods = []
    for label, model in loaded.items():
        users = {}
        for split in ev.SPLITS:
            seqs, user_ids = sequences(split, model.config.max_length)
            if not np.array_equal(user_ids, slices[split].user_ids):
                raise AssertionError(f"{label}: the {split} users differ between sequence lengths")
            users[split] = embed_users(model, seqs, device)
        methods.append(evaluator.user_embeddings(label, users, embed_all_pins(model, device),
                                                 setting=f"max_length={model.config.max_length}",
                                                 similarity=model.similarity))
    all_seqs, _ = sequences(None, history_length)
    methods.append(evaluator.popularity(ev.input_history(all_seqs), cutoff_s, config.popularity_days))
    methods.append(evaluator.last_pin(config.last_pin_histories))
    methods.append(evaluator.decayed_average(config.decay_lams))
    methods.append(evaluator.pinnersage(config.pinnersage_alphas, lams=config.decay_lams))
    results = ev.results_table(methods, ci_samples=config.ci_samples, seed=config.seed)
    log.info("evaluation for ds=%s:\n%s", config.ds, format_table(
        results[results["split"] == "test"], ["recall@10", "recall@50", "recall@100", "p90_coverage@10",
                                              f"topic_entropy@{ev.DIVERSITY_K}"]))

    return methods, results, cutoff


def run(config: EvaluatePinnerFormerConfig) -> EvaluateResult:
    import torch

    from embeddings.data.schemas import PIN_EMBEDDINGS
    from embeddings.eval.bootstrap import paired_values
    from embeddings.pinnerformer import evaluation as ev
    from embeddings.pinnerformer.model_dir import load_pin_table
    from embeddings.pinsage.training import resolve_device
    from embeddings.registry.models import load_model
    from embeddings.registry.promotion import champion_version, promote_if_better
    from embeddings.registry.tracking import TrackedRun, connect

    started = time.perf_counter()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    client = connect(config.tracking_uri)
    name = config.registered_model
    challenger = challenger_for(client, name, config.ds, trained_by="jobs.train_pinnerformer")
    version = str(challenger.version)
    lake = Lake(config.lake_uri)
    pins = load_pin_table(lake, config.ds)
    pins_where = lake.describe(PIN_EMBEDDINGS, config.ds)
    check_pinsage_version(name, challenger, pins.model_version, pins_where)  # before anything is decided
    incumbent = champion_version(client, name)
    models = {f"pinnerformer challenger v{version}": version}
    stale = None
    if incumbent is not None and incumbent != version:
        champion = client.get_model_version(name, incumbent)
        consumed = champion.tags.get(PINSAGE_VERSION_TAG)
        if consumed == pins.model_version:
            models[f"pinnerformer champion v{incumbent}"] = incumbent
        elif config.replace_stale_champion:
            stale = consumed or "an unrecorded PinSage version"
            log.warning("champion v%s consumed %s, not %s of %s: not compared", incumbent, stale, pins.model_version,
                        pins_where)
        else:
            check_pinsage_version(name, champion, pins.model_version, pins_where)
    device = resolve_device(config.device)
    vectors = torch.from_numpy(pins.vectors)
    loaded = {}
    for label, v in models.items():
        model, model_config = load_model(client, name, alias=None, version=v, map_location="cpu")
        if model_config.pin_dim != pins.dim:
            raise ValueError(f"{name} {label} reads {model_config.pin_dim}-d pin vectors but {pins_where} has "
                             f"{pins.dim}-d")
        model.attach_pin_table(vectors)
        loaded[label] = model.to(device)

    methods, results, cutoff = compare_methods(lake, config, pins, loaded, device)

    challenger_users = methods[0].results["test"]
    if len(models) > 1:
        challenger_values, champion_values = paired_values(challenger_users, methods[1].results["test"],
                                                           PROMOTION_METRIC)
    else:
        challenger_values, champion_values = challenger_users.metric(PROMOTION_METRIC), None

    tracked = TrackedRun(client, challenger.run_id, client.get_run(challenger.run_id).info.experiment_id)
    tracked.set_tags({
        "eval.pinsage_model_version": pins.model_version,
        "eval.champion_compared": str(len(models) > 1),
        "eval.cutoff": cutoff.isoformat(),
        **{f"eval.setting.{m.name}": repr(m.setting) for m in methods},
    })
    tracked.log_evaluation(results)
    with tempfile.TemporaryDirectory() as tmp:
        for split in ev.SPLITS:
            tracked.log_figure(ev.plot_recall_at_k({m.name: m.results[split] for m in methods},
                                                   Path(tmp) / f"recall_at_k_{split}.png"))
    if stale is not None:
        decision = replace_stale_champion(client, name, version, incumbent, stale, pins.model_version,
                                          protocol=challenger_users.protocol, num_users=len(challenger_values),
                                          seed=config.seed)
    else:
        decision = promote_if_better(client, name, version, challenger_values, champion_values,
                                     margin=config.margin, metric=PROMOTION_METRIC,
                                     protocol=challenger_users.protocol, seed=config.seed)
    tracked.set_tags(decision.tags())
    seconds = time.perf_counter() - started
    log.info("%s version %s: %s (%s) in %.0f s", name, version, "champion" if decision.promoted else "challenger",
             decision.reason, seconds)
    return EvaluateResult(version, incumbent, decision.promoted, decision.reason, results, seconds)


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate_pinnerformer", description=__doc__.splitlines()[0])
    parser.add_argument("--ds", required=True)
    parser.add_argument("--lake-uri", default=settings.lake_uri)
    parser.add_argument("--tracking-uri", default=settings.mlflow_tracking_uri)
    parser.add_argument("--max-users", type=int, default=2000, help="held-out users scored per split (0 = all)")
    parser.add_argument("--margin", type=float, default=0.0, help="recall@10 gain required beyond noise")
    parser.add_argument("--no-replace-stale-champion", action="store_true",
                        help="fail instead of replacing a champion made from another PinSage version")
    parser.add_argument("--ci-samples", type=int, default=200)
    parser.add_argument("--device", default=settings.device)
    parser.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: one per core)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(EvaluatePinnerFormerConfig(
        lake_uri=args.lake_uri, ds=args.ds, tracking_uri=args.tracking_uri, max_users=args.max_users,
        margin=args.margin, replace_stale_champion=not args.no_replace_stale_champion, ci_samples=args.ci_samples,
        device=args.device, num_threads=args.num_threads, seed=args.seed,
    ))


if __name__ == "__main__":
    main()

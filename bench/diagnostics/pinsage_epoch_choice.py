"""Which epoch of a PinSage training to keep: the best item-to-item VALID hit@10, the VALID user task, or the last?

    .venv/bin/python bench/diagnostics/pinsage_epoch_choice.py --development-split [--rival last] DIR [DIR ...]

Each DIR holds one seed's epochs, kept by ``bench/diagnostics/pinsage_user_valid.py --development-split
--epoch-vectors DIR`` (every epoch's embeddings, and the epoch the training kept). Per seed, the bench's way to pick
the embeddings and the user setting (``--settings``, the bench's ``USER_QUERY_SETTINGS`` by default) against a
rival (``--rival``):

- ``kept``, the bench's: the epoch the training kept (its best item-to-item VALID hit@10, the figure early stopping
  watches), then the user setting best on VALID by the bench's user tuning metric (``TUNING_METRIC``);
- ``user`` (the default rival): the (epoch, user setting) best on VALID by that same metric, over every epoch;
- ``last``: the training's last epoch, then the user setting best on VALID by that same metric.

Both are scored on the development split's TEST slice (VALID's saves with a TEST-shaped history; TEST itself is
never read, so the flag is required): user HR@10 and NDCG@10 and item-to-item hit@10. Prints one JSON line per
seed and a last line with the rival minus ``kept``: per seed, and over the seeds with each user's (pair's) values
averaged over the seeds first, with a 95% paired bootstrap interval. Records nothing: docs/PINSAGE.md keeps what
it decided.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.diagnostics.pinsage_user_valid import parse_setting  # noqa: E402
from bench.pinsage_quality import build_parser, hetrec_inputs, paired_differences  # noqa: E402
from embeddings.eval.baselines import tune_on_validation  # noqa: E402
from embeddings.eval.bootstrap import paired_values  # noqa: E402
from embeddings.eval.metrics import RankingMetrics  # noqa: E402
from embeddings.eval.scorers import EmbeddingScorer  # noqa: E402
from embeddings.pinsage.evaluation import (  # noqa: E402
    ITEM_TASK,
    TUNING_METRIC,
    USER_QUERY_SETTINGS,
    USER_TASK,
    Evaluator,
    MethodResult,
    embedding_users,
)

METRICS = {"user_hr@10": (USER_TASK, "hr@10"), "user_ndcg@10": (USER_TASK, "ndcg@10"),
           "i2i_hr@10": (ITEM_TASK, "hr@10")}


@dataclass
class Run:
    """One seed's training: its epochs' embeddings and the epoch it kept."""

    directory: Path
    seed: int
    kept_epoch: int
    epochs: dict[int, np.ndarray]


def load_run(directory: Path) -> Run:
    """A finished training's epochs from ``--epoch-vectors DIR``, every epoch present and on the development split.

    Raises:
        ValueError: no ``run.json`` (the training did not finish), a run off the development split, or an epoch
            missing (a training resumed from a checkpoint keeps only the epochs it ran).
    """
    meta = directory / "run.json"
    if not meta.exists():
        raise ValueError(f"{directory}: no run.json, so its training did not finish")
    run = json.loads(meta.read_text())
    if not run["development_split"]:
        raise ValueError(f"{directory}: trained on the bench's split, not the development split")
    expected = list(range(1, run["epochs_run"] + 1))
    records = [json.loads(line) for line in (directory / "epochs.jsonl").read_text().splitlines()]
    found = [r["epoch"] for r in records]
    if found != expected or not all((directory / f"epoch{e:02d}.npy").exists() for e in expected):
        raise ValueError(f"{directory}: epochs {found} kept, the training ran {expected}")
    epochs = {e: np.load(directory / f"epoch{e:02d}.npy") for e in expected}
    return Run(directory, run["seed"], run["best_epoch"], epochs)


def choose(evaluator: Evaluator, run: Run, settings: list, rival: str = "user") -> dict[str, tuple[int, tuple]]:
    """{"kept": (epoch, user setting), rival: (epoch, user setting)}, each chosen on VALID only; the rival is
    ``user`` (the best over every epoch) or ``last`` (the last epoch)."""
    last = max(run.epochs)
    epochs = sorted(run.epochs) if rival == "user" else sorted({run.kept_epoch, last})
    valid: dict[tuple[int, tuple], RankingMetrics] = {}
    for epoch in epochs:
        factory = embedding_users(EmbeddingScorer(run.epochs[epoch]).items)
        for setting in settings:
            valid[(epoch, setting)] = evaluator.users(factory, setting, "valid")
    candidates = {"kept": [(run.kept_epoch, s) for s in settings],
                  rival: list(valid) if rival == "user" else [(last, s) for s in settings]}
    return {way: tune_on_validation(options, valid.__getitem__, TUNING_METRIC[USER_TASK]).best
            for way, options in candidates.items()}


def score(evaluator: Evaluator, run: Run, way: str, choice: tuple[int, tuple]) -> MethodResult:
    """The chosen epoch's user task (with the chosen setting) and item-to-item task on the TEST slice (the
    development split's: ``main`` builds no other)."""
    epoch, setting = choice
    scorer = EmbeddingScorer(run.epochs[epoch])
    users = evaluator.users(embedding_users(scorer.items), setting, "test")
    return MethodResult(way, {USER_TASK: choice},
                        {(USER_TASK, "test"): users, (ITEM_TASK, "test"): evaluator.item_to_item(scorer, "test")}, 0.0)


def compare(scored: list[dict[str, MethodResult]], rival: str = "user", samples: int = 2000) -> dict:
    """The rival minus ``kept`` on the TEST slice, x100: per seed, and paired over queries with each query's values
    averaged over the seeds first ([mean, ci_low, ci_high], 95%; the bench's ``paired_differences``)."""
    paired = paired_differences({way: [seed[way] for seed in scored] for way in (rival, "kept")}, {"kept"},
                                primary=rival, num_samples=samples)["kept"]
    out: dict = {"seeds": len(scored)}
    for name, (task, metric) in METRICS.items():
        per_seed = [100 * float(np.mean(np.subtract(*paired_values(seed[rival].results[(task, "test")],
                                                                   seed["kept"].results[(task, "test")], metric))))
                    for seed in scored]
        diff = paired[f"{task}/{metric}"]
        out[name] = {"per_seed": [round(d, 3) for d in per_seed], "mean": round(float(np.mean(per_seed)), 3),
                     "paired": [round(100 * diff[k], 3) for k in ("diff", "ci_low", "ci_high")]}
    return out


def main(argv: list[str]) -> None:
    parser = build_parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("runs", type=Path, nargs="+", metavar="DIR", help="one seed's --epoch-vectors DIR each")
    parser.add_argument("--settings", type=parse_setting, nargs="*", default=list(USER_QUERY_SETTINGS),
                        help="user settings, e.g. 10:sum 200:softmax:0.1")
    parser.add_argument("--development-split", action="store_true",
                        help="required: score the development split's TEST slice (TEST itself is never read)")
    parser.add_argument("--rival", choices=("user", "last"), default="user",
                        help="the way set against the kept epoch: best on VALID users over every epoch, or the last")
    args = parser.parse_args(argv)
    if not args.development_split:
        parser.error("the comparison scores the development split's TEST slice; it needs --development-split")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("embeddings.eval.baselines").setLevel(logging.WARNING)  # one line per (epoch, setting)
    runs = [load_run(d) for d in args.runs]
    _, data = hetrec_inputs(args, development=True)
    evaluator = Evaluator(data)
    scored = []
    for run in runs:
        choices = choose(evaluator, run, args.settings, args.rival)
        seed = {way: score(evaluator, run, way, choice) for way, choice in choices.items()}
        scored.append(seed)
        line: dict = {"run": str(run.directory), "seed": run.seed, "kept_epoch": run.kept_epoch}
        for way, choice in choices.items():
            results = seed[way].results
            line[way] = {"epoch": choice[0], "setting": repr(choice[1]),
                         **{f"dev_test_{name}": round(100 * float(results[(task, "test")].metric(m).mean()), 3)
                            for name, (task, m) in METRICS.items()}}
        print(json.dumps(line), flush=True)
    print(json.dumps({"method": f"{args.rival} - kept, dev_test, x100", **compare(scored, args.rival)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""The refreshed protocol against the frozen one, on HetRec's development split only (never TEST).

    .venv/bin/python bench/diagnostics/pinsage_user_valid.py --development-split --seed 6 --workdir DIR \
        --vectors /tmp/dev6.npy --settings 10:sum --knn --pixie-latest --skip-content     # trains seed 6
    .venv/bin/python bench/diagnostics/pinsage_refresh.py --checkpoints DIR --first-seed 6 --seeds 2

Frozen (the bench's protocol): every method's graph, PPR neighborhoods, walks, item-kNN and popularity come from
the TRAIN saves, and the scored slice is ranked with them. Refreshed (what the nightly pipeline serves: the graph
rebuilt every night, PinSage inferred on it by the champion): settings are still tuned on VALID with the TRAIN
inputs, then the scored slice is ranked with the graph, PPR neighborhoods, walks and fits rebuilt from every save
before it, and PinSage's vectors inferred over that graph by the same trained model (no retraining). Pin text keeps
the importer's training tags in both.

On the development split (``public_inputs(development=True)``) the scored slice is VALID's saves, and "every save
before it" is the dev-TRAIN and dev-VALID saves. The trainings are the primary PinSage of the bench, resumed from
``DIR/hetrec-development`` of ``--checkpoints DIR`` (where ``pinsage_user_valid.py --development-split --workdir
DIR`` leaves them; a missing one is trained there). Prints, as JSON lines and a Markdown table, each method's
dev-test figures under both protocols, refreshed minus frozen per method, and PinSage minus each baseline under
each protocol, all with 95% paired bootstrap intervals over users (item pairs for i2i), PinSage's seeds averaged
per user. Records nothing: docs/PINSAGE.md keeps what it decided.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.pinsage_quality import (  # noqa: E402
    ABLATIONS,
    HETREC_USER_SETTINGS,
    PAIRED,
    PRIMARY,
    ablation_variants,
    baseline_methods,
    build_parser,
    embed_variant,
    format_paired,
    hetrec_inputs,
    paired_differences,
    seed_mean,
    set_threads,
    summarize,
    train_variant,
    training_options,
)
from embeddings.eval.bootstrap import paired_bootstrap  # noqa: E402
from embeddings.pinsage.evaluation import ITEM_TASK, USER_TASK, Evaluator, MethodResult  # noqa: E402

PROTOCOLS = ("frozen", "refreshed")


def refreshed_minus_frozen(frozen: dict[str, list[MethodResult]], refreshed: dict[str, list[MethodResult]],
                           num_samples: int = 2000) -> dict[str, dict]:
    """Per method and ``PAIRED`` metric: refreshed minus frozen on the scored slice, the mean per-query difference
    and its 95% paired bootstrap interval (each side averaged over the method's seeds first).

    Each side is aligned with its protocol's first PinSage run; the two protocols score the same queries."""
    ours, theirs = refreshed[PRIMARY][0], frozen[PRIMARY][0]
    out: dict[str, dict] = {}
    for method, runs in frozen.items():
        row = {}
        for task, metric in PAIRED:
            if not np.array_equal(ours.results[(task, "test")].query_ids, theirs.results[(task, "test")].query_ids):
                raise ValueError(f"the two protocols scored different {task} queries")
            diff = paired_bootstrap(seed_mean(refreshed[method], task, metric, ours),
                                    seed_mean(runs, task, metric, theirs), num_samples, seed=0)
            row[f"{task}/{metric}"] = {"diff": round(diff.mean, 6), "ci_low": round(diff.ci_low, 6),
                                       "ci_high": round(diff.ci_high, 6)}
        out[method] = row
    return out


def means(methods: dict[str, list[MethodResult]]) -> dict[str, dict[str, float]]:
    """Each method's scored-slice figures (x100), averaged over its seeds (the bench's ``summarize``)."""
    keys = [f"{task}/{metric}" for task, metric in PAIRED]
    return {name: {key: round(100 * summary[key]["mean"], 2) for key in keys}
            for name, summary in ((name, summarize(name, runs)) for name, runs in methods.items())}


def format_means(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """A Markdown table: each method's figures under each protocol."""
    header = ["method", "protocol"] + [f"{'user' if t == USER_TASK else 'i2i'} {m}" for t, m in PAIRED]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in rows["frozen"]:
        for protocol in PROTOCOLS:
            values = rows[protocol][method]
            lines.append("| " + " | ".join([method, protocol] + [f"{values[f'{t}/{m}']:.2f}" for t, m in PAIRED])
                         + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = build_parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--checkpoints", type=Path, required=True,
                        help="the --workdir of pinsage_user_valid.py --development-split (its hetrec-development/)")
    args = parser.parse_args(argv)
    seeds = tuple(range(args.first_seed, args.first_seed + args.seeds))  # the bench's flags
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(args, 2)
    inputs, data = hetrec_inputs(args, development=True, refresh=True)
    evaluators = {"frozen": Evaluator(data), "refreshed": Evaluator(data, refit_before_test=True)}
    variant = next(v for v in ablation_variants(ABLATIONS, seeds, 1, args.loss, args.num_neighbors)
                   if v.name == PRIMARY)
    checkpoints = args.checkpoints / "hetrec-development"
    checkpoints.mkdir(parents=True, exist_ok=True)
    methods: dict[str, dict[str, list[MethodResult]]] = {p: {PRIMARY: []} for p in PROTOCOLS}
    for seed in seeds:
        model, summary = train_variant(inputs, variant, seed, training_options(args),
                                       (args.hidden_dim, args.embedding_dim), checkpoints, resume=True,
                                       id_dim=args.id_dim)
        print(json.dumps({"seed": seed, "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
                          "resumed": summary["resumed"]}), flush=True)
        frozen = embed_variant(model, inputs.graph, variant)
        served = embed_variant(model, inputs.refreshed.graph, variant)
        name = f"{PRIMARY} seed {seed}"
        methods["frozen"][PRIMARY].append(evaluators["frozen"].embeddings(name, frozen, HETREC_USER_SETTINGS))
        methods["refreshed"][PRIMARY].append(
            evaluators["refreshed"].embeddings(name, frozen, HETREC_USER_SETTINGS, test_vectors=served))
    for protocol, evaluator in evaluators.items():
        methods[protocol].update(baseline_methods(evaluator, inputs))
    rows = {protocol: means(runs) for protocol, runs in methods.items()}
    change = refreshed_minus_frozen(methods["frozen"], methods["refreshed"])
    versus = {protocol: paired_differences(runs, set()) for protocol, runs in methods.items()}
    settings = {protocol: {name: [{k: repr(v) for k, v in r.settings.items()} for r in runs]
                           for name, runs in by_method.items()} for protocol, by_method in methods.items()}
    print(json.dumps({"dev_test_x100": rows, "refreshed_minus_frozen": change, f"{PRIMARY} minus": versus,
                      "settings": settings, "graphs": {k: inputs.stats[k] for k in ("graph", "refreshed_graph")}}),
          flush=True)
    print("\ndev-test (VALID's saves), x100, PinSage averaged over seeds " + ", ".join(map(str, seeds)))
    print(format_means(rows))
    print("\nrefreshed minus frozen, x100, 95% paired interval")
    print(format_paired({m: {**row, "primary_seeds": len(seeds)} for m, row in change.items()}, PRIMARY))
    for protocol in PROTOCOLS:
        print(f"\n{PRIMARY} minus each method, {protocol} protocol")
        print(format_paired(versus[protocol]))
    print(f"\nitem-to-item queries: {methods['frozen'][PRIMARY][0].results[(ITEM_TASK, 'test')].num_queries}, users: "
          f"{methods['frozen'][PRIMARY][0].results[(USER_TASK, 'test')].num_queries}")


if __name__ == "__main__":
    main(sys.argv[1:])

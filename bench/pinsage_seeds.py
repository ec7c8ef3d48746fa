"""Pool the per-seed TEST figures of several ``bench/pinsage_quality.py`` records into one table.

    .venv/bin/python bench/pinsage_seeds.py bench/results/pinsage_ablations_mean.json \
        bench/results/pinsage_ablations_mean_seed2.json

A full 3-seed run of both poolings trains six models (about 3 h on 2 cores), longer than one sitting, and the
checkpoints do not outlive it. ``--first-seed`` lets a later run add seed 2 to an earlier record of seeds 0
and 1; this script pools them, every row of the ablation table alike (so one-seed ablation runs join the
3-seed table of the poolings). Every record must come from the same evaluation (dataset, protocol, VALID
grids, pairs, model and training settings but the seeds); a seed found in two records must give the same
figures (the trainings repeat at one torch thread) or the script refuses, and a baseline (no seeds) must
agree across the records. The paired bootstrap needs per-query values, which the records do not keep, so
the pooled table has means and spreads over seeds only; each record's own paired intervals stay in it.

Prints the table and the "importance >= mean pooling" check on the seeds both poolings ran, writes
``bench/results/pinsage_seeds.json`` and appends to docs/BENCHMARKS.md (``bench.common.record``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import record  # noqa: E402
from bench.pinsage_quality import ITEM_TASK, PRIMARY, REPORTED, USER_TASK, format_summary  # noqa: E402

# Config keys that may differ between pooled records (everything else must match).
PER_RUN_KEYS = ("seeds", "ablations", "workdir")
TOLERANCE = 1e-5  # records round per-seed figures to 5 decimals


def comparable_config(config: dict) -> dict:
    """The record's config without what legitimately differs between runs of one evaluation (the seeds, which
    variants ran); a record from before ``--id-dim`` existed trained without id vectors."""
    out = {k: v for k, v in config.items() if k not in PER_RUN_KEYS + ("variants",)}
    out["model"] = {"id_dim": 0, **out.get("model", {})}
    return out


def variant_definitions(config: dict) -> dict[str, tuple]:
    """{variant name: what it trains} (a name must mean the same training in every pooled record)."""
    return {v["name"]: (v["pooling"], v["hard_negatives"], v["loss"], v["num_neighbors"]) for v in config["variants"]}


def per_seed(method: dict) -> dict[int | None, dict[str, float]]:
    """{seed: {metric key: value}}; a baseline (no training) has the one key None."""
    seeds = [run["seed"] for run in method["training"]] if "training" in method else [None]
    keys = [f"{task}/{metric}" for task, metric in REPORTED]
    if any(len(method[k]["per_seed"]) != len(seeds) for k in keys):
        raise ValueError(f"per-seed figures do not match the {len(seeds)} trainings")
    return {seed: {k: float(method[k]["per_seed"][i]) for k in keys} for i, seed in enumerate(seeds)}


def pool(records: Sequence[dict], names: Sequence[str]) -> dict[str, dict]:
    """{method: {"runs", "seeds", metric key: mean/std/min/max/per_seed}} over the union of the records' seeds."""
    evaluation = lambda rec: {**comparable_config(rec["config"]),  # noqa: E731
                              "dataset": rec["dataset"], "protocol": rec["protocol"]}
    reference, defined = evaluation(records[0]), variant_definitions(records[0]["config"])
    for rec, name in zip(records[1:], names[1:], strict=True):
        config = evaluation(rec)
        if config != reference:
            diff = sorted(k for k in reference.keys() | config.keys() if reference.get(k) != config.get(k))
            raise ValueError(f"{name} is not the same evaluation as {names[0]}: config differs in {diff}")
        for variant, definition in variant_definitions(rec["config"]).items():
            if defined.setdefault(variant, definition) != definition:
                raise ValueError(f"{name} trains {variant!r} as {definition}, another record as {defined[variant]}")
    pooled: dict[str, dict] = {}
    for rec, name in zip(records, names, strict=True):
        for method, figures in rec["metrics"]["hetrec_lastfm"]["methods"].items():
            try:
                seeds = per_seed(figures)
            except ValueError as err:
                raise ValueError(f"{name}, {method}: {err}") from None
            into = pooled.setdefault(method, {})
            for seed, values in seeds.items():
                if seed in into:
                    worst = max(abs(values[k] - into[seed][0][k]) for k in values)
                    if worst > TOLERANCE:
                        what = "the baseline" if seed is None else f"seed {seed}"
                        raise ValueError(f"{method}: {what} differs between {into[seed][1]} and {name} (by up to "
                                         f"{worst:.5f}); pool only repeatable runs")
                    continue
                into[seed] = (values, name)
    out = {}
    for method, seeds in pooled.items():
        order = sorted(seeds, key=lambda s: -1 if s is None else s)
        row: dict = {"runs": len(order), "seeds": [s for s in order if s is not None],
                     "records": sorted({seeds[s][1] for s in order})}
        for task, metric in REPORTED:
            key = f"{task}/{metric}"
            values = np.array([seeds[s][0][key] for s in order])
            row[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                        "min": float(values.min()), "max": float(values.max()), "per_seed": values.tolist()}
        out[method] = row
    # the trained rows first, in the order the records list them, then the baselines (as the bench's own table)
    return dict(sorted(out.items(), key=lambda item: not item[1]["seeds"]))


def importance_at_least_mean(pooled: dict[str, dict]) -> dict | None:
    """Importance minus mean pooling on the seeds both ran (user HR@10, i2i hit@10), and whether it is >= 0."""
    if PRIMARY not in pooled or "pinsage mean" not in pooled:
        return None
    shared = sorted(set(pooled[PRIMARY]["seeds"]) & set(pooled["pinsage mean"]["seeds"]))
    if not shared:
        return None
    out: dict = {"seeds": shared}
    for key in (f"{USER_TASK}/hr@10", f"{ITEM_TASK}/hr@10"):
        means = [float(np.mean([v for s, v in zip(pooled[m]["seeds"], pooled[m][key]["per_seed"], strict=True)
                                if s in shared])) for m in (PRIMARY, "pinsage mean")]
        out[key] = {"importance": means[0], "mean": means[1], "diff": means[0] - means[1]}
    out["met"] = all(out[k]["diff"] >= 0 for k in (f"{USER_TASK}/hr@10", f"{ITEM_TASK}/hr@10"))
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", type=Path, help="bench/results/pinsage*.json records to pool")
    parser.add_argument("--name", default="pinsage_seeds", help="the record to write (bench/results/<name>.json)")
    parser.add_argument("--dry-run", action="store_true", help="print the table, record nothing")
    args = parser.parse_args(argv)
    records, names = [], []
    for path in args.records:
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise SystemExit(f"cannot read the record {path}: {err}") from None
        names.append(path.name)
    pooled = pool(records, names)
    table = format_summary(pooled)
    check = importance_at_least_mean(pooled)
    lines = [f"pooled from {', '.join(names)} (commits {', '.join(r['commit'] for r in records)}); "
             "TEST, x100, mean ± std [min, max] over the union of their seeds:\n\n" + table + "\n"]
    if check:
        lines.append(f"importance minus mean pooling on seeds {check['seeds']}: user HR@10 "
                     f"{100 * check[f'{USER_TASK}/hr@10']['diff']:+.2f}, i2i hit@10 "
                     f"{100 * check[f'{ITEM_TASK}/hr@10']['diff']:+.2f}; importance >= mean pooling: "
                     f"{'met' if check['met'] else 'NOT met'}")
    lines.append("no paired interval here (the records keep no per-query values): see each record's own")
    print("\n".join(lines))
    if args.dry_run:
        return pooled
    command = " ".join([".venv/bin/python", "bench/pinsage_seeds.py", *(argv if argv is not None else sys.argv[1:])])
    record(name=args.name, command=command, dataset=records[0]["dataset"], protocol=records[0]["protocol"],
           config={"records": names, "commits": [r["commit"] for r in records],
                   "evaluation": comparable_config(records[0]["config"])},
           metrics={"methods": pooled, "importance_vs_mean": check}, summary=lines)
    return pooled


if __name__ == "__main__":
    main()

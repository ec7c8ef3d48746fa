"""PPR neighborhoods benchmark (graph issue): walker speed, Spark job speed and scaling, exact-PPR agreement.

Dataset: the synthetic generator's `large` preset (1M pins) through `jobs.build_graph` (Spark), and a
~10k-pin synthetic world for the exact-PPR check. Everything side by side in one run, on this machine:

1. walker_steps_per_s_per_core: the numba walker in a plain single process over the memory-mapped CSR,
   one thread (median of 3 runs over the same 2,000 seed pins, default budget); also
   walker_2threads_steps_per_s_per_core: the same seeds split over 2 numba threads in the one process, per
   core (both cores walk at once and share the memory system, as the 2 tasks of a local[2] job do).
2. speedup_2_vs_1_cores: the Spark job at the default budget over the first --speedup-pins pins (dry run:
   tasks write into staging, nothing is committed) at local[1] vs local[2] (walking+writing stage,
   start-up excluded; median of 3 each).
3. wall_s_1m_pins / spark_steps_per_s_per_core: the Spark job over all pins at local[2] with the
   default budget, committed (start-up and the tasks' write time reported separately), and its ratio to
   the walker alone: spark_to_walker_ratio against the 1-thread walker (the bar's literal reading),
   spark_to_walker_2threads_ratio against the 2-thread walker.
4. exact_ppr_top10_mass_ratio / overlap: Monte Carlo top-10 vs power-iteration PPR on the 10k-pin graph,
   for several budgets (the default's figures are the headline).

Usage: python bench/ppr.py [--work-dir DIR] [--speedup-pins N] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import record  # noqa: E402
from embeddings.data.schemas import GRAPH_CSR  # noqa: E402
from embeddings.graph.csr import BipartiteCSR  # noqa: E402
from embeddings.graph.exact_ppr import exact_ppr, mass_ratio, top_k_exact, transition_factors  # noqa: E402
from embeddings.graph.walks import WalkConfig, ppr_neighborhoods, warm_up  # noqa: E402
from embeddings.lake import Lake  # noqa: E402

DS = "2026-03-01"


def _python(code: str, env_extra: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter (its own JVM); it prints one JSON line last."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1", **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-4000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_world(lake_uri: str, scale: str, overrides: dict | None = None) -> None:
    lake = Lake(lake_uri)
    if lake.exists(GRAPH_CSR, DS):
        return
    _python(
        "import json; from jobs.generate_synthetic import GenerateSyntheticConfig, run;"
        f"run(GenerateSyntheticConfig(ds='{DS}', lake_uri='{lake_uri}', scale='{scale}', overrides={overrides or {}}));"
        "print(json.dumps({}))"
    )
    t = time.perf_counter()
    _python(
        "import json; from jobs.build_graph import BuildGraphConfig, run;"
        f"r = run(BuildGraphConfig(lake_uri='{lake_uri}', ds='{DS}', spark_master='local[2]'));"
        "print(json.dumps({}))",
        {"PYSPARK_SUBMIT_ARGS": "--driver-memory 8g pyspark-shell"},
    )
    print(f"  built graph for {lake_uri} in {time.perf_counter() - t:.0f} s")


def spark_ppr(lake_uri: str, master: str, num_steps: int, pin_limit: int | None = None) -> dict:
    """One run of jobs.ppr_neighborhoods in a fresh process; pin_limit makes it a dry run over the first pins.

    Returns the result's timings (seconds, steps/s) with ``steps``, ``pins`` (graph), ``walked_pins``, ``cores``.
    """
    dry = f", dry_run=True, pin_limit={pin_limit}" if pin_limit is not None else ""
    return _python(
        "import json; from jobs.ppr_neighborhoods import PprNeighborhoodsConfig, run;"
        f"r = run(PprNeighborhoodsConfig(lake_uri='{lake_uri}', ds='{DS}', spark_master='{master}', "
        f"num_steps={num_steps}{dry}));"
        "print(json.dumps({'steps': r.total_steps, 'pins': r.num_pins, 'walked_pins': r.walked_pins, "
        "'cores': r.cores, **r.timings}))",
        {"PYSPARK_SUBMIT_ARGS": "--driver-memory 4g pyspark-shell"},
    )


def walker_speed(graph: BipartiteCSR, config: WalkConfig, num_threads: int = 1, num_seeds: int = 2000) -> float:
    """Walker steps per second per thread in this process (median of 3 over the same ``num_seeds`` seeds).

    With ``num_threads`` > 1 the seeds are split over numba threads (``ppr_neighborhoods(num_threads=)``) and
    the rate is divided by the thread count, so it reads as steps/s per core when each thread has a core.
    """
    import numba

    if num_threads > numba.config.NUMBA_NUM_THREADS:  # ppr_neighborhoods would quietly use fewer threads
        raise RuntimeError(f"walker_speed(num_threads={num_threads}): numba allows only "
                           f"{numba.config.NUMBA_NUM_THREADS} thread(s) here (NUMBA_NUM_THREADS, cores)")
    warm_up()
    rng = np.random.default_rng(0)
    seeds = rng.choice(np.flatnonzero(graph.pin_degree() > 0), num_seeds, replace=False).astype(np.int32)
    ppr_neighborhoods(graph, seeds[:50], config, num_threads=num_threads)  # page the CSR in, compile
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        result = ppr_neighborhoods(graph, seeds, config, num_threads=num_threads)
        rates.append(result.steps.sum() / (time.perf_counter() - t) / num_threads)
    return float(statistics.median(rates))


def exact_agreement(graph: BipartiteCSR, budgets: list[int], num_seeds: int) -> dict:
    rng = np.random.default_rng(1)
    seeds = rng.choice(np.flatnonzero(graph.pin_degree() > 0), num_seeds, replace=False).astype(np.int32)
    factors = transition_factors(graph)
    exact = [exact_ppr(graph, int(s), 0.5, factors=factors) for s in seeds]
    rows = {}
    for budget in budgets:
        result = ppr_neighborhoods(graph, seeds, WalkConfig(num_steps=budget))
        ratios = [mass_ratio(e, int(s), result.neighbors[i]) for i, (s, e) in enumerate(zip(seeds, exact))]
        overlaps = [len(set(top_k_exact(e, int(s), 10).tolist()) & set(result.neighbors[i][:10].tolist())) / 10
                    for i, (s, e) in enumerate(zip(seeds, exact))]
        rows[budget] = {"mass_ratio": float(np.mean(ratios)), "overlap": float(np.mean(overlaps))}
        print(f"  budget {budget:>6}: top-10 exact mass ratio {rows[budget]['mass_ratio']:.3f}, "
              f"overlap {rows[budget]['overlap']:.3f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default=str(REPO / "var" / "bench"))
    parser.add_argument("--speedup-pins", type=int, default=None,
                        help="pins walked (dry run) per 1-vs-2-core run (default 100,000; 5,000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="demo-size graph instead of 1M pins (smoke run)")
    args = parser.parse_args()
    speedup_pins = args.speedup_pins or (5_000 if args.quick else 100_000)
    default = WalkConfig()
    big = str(Path(args.work_dir) / ("ppr_demo" if args.quick else "ppr_large") / "lake")
    small = str(Path(args.work_dir) / "ppr_10k" / "lake")

    print("== data: synthetic worlds and their graphs (jobs.generate_synthetic, jobs.build_graph)")
    ensure_world(big, "demo" if args.quick else "large")
    ensure_world(small, "demo", {"num_pins": 10_000, "num_users": 2_500})
    graph = BipartiteCSR.load(Lake(big).local_path(GRAPH_CSR, DS))
    print(f"  large graph: {graph.num_pins:,} pins, {graph.num_boards:,} boards, {graph.num_edges:,} edges")

    print("== 1. walker alone (single process; 1 thread, then 2 threads over the same seeds)")
    walker = walker_speed(graph, default)
    walker2 = walker_speed(graph, default, num_threads=2)
    print(f"  1 thread {walker / 1e6:.2f} M steps/s per core, 2 threads {walker2 / 1e6:.2f} M steps/s per core "
          f"at {default.num_steps} steps per pin")

    print(f"== 2. Spark job, local[1] vs local[2], first {speedup_pins:,} pins (dry run), "
          f"{default.num_steps} steps per pin, median of 3")
    one = [spark_ppr(big, "local[1]", default.num_steps, speedup_pins) for _ in range(3)]
    two = [spark_ppr(big, "local[2]", default.num_steps, speedup_pins) for _ in range(3)]
    rate1 = statistics.median(r["steps_per_s"] for r in one)
    rate2 = statistics.median(r["steps_per_s"] for r in two)
    print(f"  {one[0]['walked_pins']:,} pins: 1 core {rate1 / 1e6:.2f} M steps/s, 2 cores {rate2 / 1e6:.2f} M "
          f"steps/s: {rate2 / rate1:.2f}x")

    print(f"== 3. Spark job over all pins, local[2], default budget {default.num_steps}")
    full = spark_ppr(big, "local[2]", default.num_steps)
    spark_rate = full["steps_per_core_s"]
    write_share = full["task_write_s"] / max(full["task_walk_s"] + full["task_write_s"], 1e-9)
    print(f"  {full['pins']:,} pins in {full['total_s']:.0f} s (session {full['session_s']:.0f} s, warm-up "
          f"{full['warmup_s']:.0f} s, walking+writing {full['walk_s']:.0f} s; tasks spent "
          f"{full['task_walk_s']:.0f} s walking, {full['task_write_s']:.0f} s writing = {write_share:.1%}); "
          f"{spark_rate / 1e6:.2f} M steps/s per core = {spark_rate / walker:.2f} of the 1-thread walker, "
          f"{spark_rate / walker2:.2f} of the 2-thread walker")

    print("== 4. Monte Carlo vs exact PPR on the 10k-pin graph (200 seeds)")
    graph10k = BipartiteCSR.load(Lake(small).local_path(GRAPH_CSR, DS))
    agreement = exact_agreement(graph10k, [1000, 2000, 5000, 10000, 20000], 200)

    metrics = {
        "walker_steps_per_s_per_core": walker,
        "spark_steps_per_s_per_core": spark_rate,
        "spark_to_walker_ratio": spark_rate / walker,
        "walker_2threads_steps_per_s_per_core": walker2,
        "spark_to_walker_2threads_ratio": spark_rate / walker2,
        "speedup_2_vs_1_cores": rate2 / rate1,
        "speedup_pins": one[0]["walked_pins"],
        "spark_1_core_steps_per_s": rate1,
        "spark_2_cores_steps_per_s": rate2,
        "exact_ppr_top10_mass_ratio": agreement[default.num_steps]["mass_ratio"],
        "exact_ppr_top10_overlap": agreement[default.num_steps]["overlap"],
        "steps_per_pin": default.num_steps,
        "wall_s_1m_pins": full["total_s"],
        "spark_startup_s": full["session_s"] + full["warmup_s"],
        "spark_task_walk_s": full["task_walk_s"],
        "spark_task_write_s": full["task_write_s"],
        "spark_task_write_share": write_share,
        "agreement_by_budget": agreement,
        "spark_runs_1_core": one,
        "spark_runs_2_cores": two,
        "spark_full_run": full,
    }
    if args.quick:  # a smoke run of the script: figures printed, nothing recorded
        print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}, indent=2))
        return
    record(
        name="ppr",
        command="python bench/ppr.py" + (f" --speedup-pins {args.speedup_pins}" if args.speedup_pins else ""),
        dataset=(f"synthetic {'demo' if args.quick else 'large'} preset, ds={DS}: {graph.num_pins:,} pins, "
                 f"{graph.num_edges:,} edges after pruning; exact check on a {graph10k.num_pins:,}-pin synthetic graph"),
        protocol=("walker: median of 3 over 2,000 seeds, 1 and 2 numba threads in one process; Spark: "
                  "walking+writing stage (start-up excluded); 2 vs 1 cores: median of 3 dry runs per core count "
                  f"over the first {one[0]['walked_pins']:,} pins at the default budget; all pins: one committed "
                  "local[2] run; exact: mean over 200 seeds of top-10 exact PPR mass captured, alpha=0.5"),
        config={"alpha": default.alpha, "num_steps": default.num_steps, "top_t": default.top_t,
                "band": list(default.band), "speedup_steps": default.num_steps, "speedup_pins": speedup_pins},
        metrics=metrics,
        summary=[
            f"walker alone: {walker / 1e6:.2f} M steps/s per core with 1 thread (bar 3.0); "
            f"{walker2 / 1e6:.2f} M per core with 2 threads in one process",
            f"Spark job (local[2], all pins): {spark_rate / 1e6:.2f} M steps/s per core = "
            f"{spark_rate / walker:.2f}x the 1-thread walker (bar 0.8), {spark_rate / walker2:.2f}x the 2-thread "
            f"walker; tasks' write time {full['task_write_s']:.0f} s = {write_share:.1%} of their walk+write time",
            f"2 vs 1 cores: {rate2 / rate1:.2f}x (bar 1.7; dry runs over {one[0]['walked_pins']:,} pins at "
            f"{default.num_steps} steps, median of 3)",
            f"all {full['pins']:,} pins at {default.num_steps} steps: {full['total_s']:.0f} s (bar 1200 s; "
            f"start-up {full['session_s'] + full['warmup_s']:.0f} s)",
            f"exact PPR top-10 mass ratio at {default.num_steps} steps: "
            f"{agreement[default.num_steps]['mass_ratio']:.3f} (bar 0.9), overlap "
            f"{agreement[default.num_steps]['overlap']:.3f}",
        ],
    )


if __name__ == "__main__":
    main()

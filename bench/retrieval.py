"""Retrieval load test on loopback: latency and throughput of the three query kinds across a hot reload.

    .venv/bin/python bench/retrieval.py                 # 100k pins, 20k users, at most 3 x 40,000 requests
    .venv/bin/python bench/retrieval.py --quick         # 20k pins, 2k users (smoke run)

Dataset: synthetic, written into a temporary lake: pins with planted topic structure (256 topics, a
primary and with probability 0.3 a secondary topic, d=64), the same vectors as `pin_embeddings`
(`pinsage/1`) and `pinnerformer_pin_embeddings` (`pinnerformer/1`), PinnerFormer user embeddings of 90% of
the users (the rest exercise the popular fallback), each user's timeline of 30 seen pins in
`user_sequences`, 3-5 medoids per user in `user_medoids`, and 7 days of engagement events. Day 1 is
published with `jobs.publish_index` (job defaults: M=32, efConstruction=200, the gate) before the server
starts.

Protocol: `python -m jobs.serve http` in its own process (`--reload-interval-s 1`), `--clients` client
threads with keep-alive connections send requests (related pins, user-to-pin and PinnerSage, k=10,
interleaved; at most `--requests-per-kind` of each, within `--max-seconds`). While they run, day 2 is
written and published through the same job (both spaces: build, gate, publish, CURRENT switch) and the
server hot-reloads it; the clients stop `--after-seconds` after /health shows the new versions. Every response must be HTTP 200 (users without an embedding get the marked
fallback); anything else, a timeout or a dropped connection is a failed request. Latency is measured by
the client (request sent to body read), per kind; throughput is completed requests per second of wall
time. The server, the clients and the publish share the machine's cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import record  # noqa: E402
from embeddings.data.schemas import (  # noqa: E402
    EVENTS,
    PIN_EMBEDDINGS,
    PINNERFORMER_PIN_EMBEDDINGS,
    PINNERFORMER_USER_EMBEDDINGS,
    USER_MEDOIDS,
    USER_SEQUENCES,
)
from embeddings.lake import Lake  # noqa: E402

D1 = dt.date(2026, 11, 1)
D2 = D1 + dt.timedelta(days=1)
KINDS = ("related_pins", "user_pins", "pinnersage")
TS = pa.timestamp("us", tz="UTC")


def planted_vectors(num: int, dim: int, seed: int, num_topics: int = 256) -> np.ndarray:
    """(num, dim) float32: a mixture of one or two topic centres plus noise (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).normal(size=(num_topics, dim))  # the same topics every day
    prior = rng.gamma(4.0, size=num_topics)
    prior /= prior.sum()
    primary = rng.choice(num_topics, size=num, p=prior)
    secondary = rng.choice(num_topics, size=num, p=prior)
    weight = np.where(rng.random(num) < 0.3, rng.uniform(0.6, 0.9, num), 1.0)[:, None]
    vectors = weight * centres[primary] + (1 - weight) * centres[secondary] + 0.6 * rng.normal(size=(num, dim))
    return vectors.astype(np.float32)


def write_day(lake: Lake, ds: dt.date, pin_ids: np.ndarray, user_ids: np.ndarray, dim: int, seed: int) -> None:
    """Every table the service reads for one ds (module docstring)."""
    rng = np.random.default_rng(seed)
    vectors = planted_vectors(len(pin_ids), dim, seed)
    n = len(pin_ids)
    lake.write(PIN_EMBEDDINGS, pa.table({"pin_id": pin_ids, "embedding": list(vectors),
                                         "model_version": ["pinsage/1"] * n}), ds)
    lake.write(PINNERFORMER_PIN_EMBEDDINGS, pa.table({
        "pin_id": pin_ids, "embedding": list(vectors), "model_version": ["pinnerformer/1"] * n,
        "pinsage_model_version": ["pinsage/1"] * n}), ds)
    embedded = user_ids[: int(len(user_ids) * 0.9)]
    user_vectors = vectors[rng.integers(n, size=len(embedded))] + 0.3 * rng.normal(size=(len(embedded), dim))
    user_vectors /= np.linalg.norm(user_vectors, axis=1, keepdims=True)
    u = len(embedded)
    lake.write(PINNERFORMER_USER_EMBEDDINGS, pa.table({
        "user_id": embedded, "embedding": list(user_vectors.astype(np.float32)),
        "model_version": ["pinnerformer/1"] * u, "pinsage_model_version": ["pinsage/1"] * u,
        "computed_ds": [ds] * u}), ds)
    seen = pin_ids[rng.integers(n, size=(len(user_ids), 30))]
    ts = dt.datetime.combine(ds, dt.time(12), tzinfo=dt.timezone.utc)
    m = len(user_ids)
    lake.write(USER_SEQUENCES, pa.table({
        "user_id": user_ids, "split": ["train"] * m, "cutoff_ts": pa.array([ts] * m, TS),
        "pin_id": list(seen), "action": [["save"] * 30] * m, "surface": [["homefeed"] * 30] * m,
        "duration_ms": pa.array([[None] * 30] * m, pa.list_(pa.int32())),
        "ts": pa.array([[ts] * 30] * m, pa.list_(TS)), "num_actions": [30] * m,
        "num_input_dropped": [0] * m, "num_future_dropped": [0] * m}), ds)
    per_user = rng.integers(3, 6, size=m)
    users = np.repeat(user_ids, per_user)
    ranks = np.concatenate([np.arange(1, k + 1) for k in per_user])
    r = len(users)
    lake.write(USER_MEDOIDS, pa.table({
        "user_id": users, "rank": ranks.astype(np.int32), "medoid_pin_id": pin_ids[rng.integers(n, size=r)],
        "importance": rng.exponential(size=r) / ranks, "cluster_size": [5] * r, "num_cluster_actions": [5] * r,
        "num_clusters": np.repeat(per_user, per_user).astype(np.int32), "num_actions": [30] * r,
        "capped": [False] * r, "pinsage_model_version": ["pinsage/1"] * r, "computed_ds": [ds] * r}), ds)
    for day in range(7):
        events_ds = ds - dt.timedelta(days=day)
        engaged = pin_ids[np.minimum(rng.zipf(1.3, size=20_000) - 1, n - 1)]
        e = len(engaged)
        lake.write(EVENTS, pa.table({
            "user_id": user_ids[rng.integers(m, size=e)], "pin_id": engaged,
            "board_id": pa.nulls(e, pa.int64()), "action": ["save"] * e,
            "ts": pa.array([dt.datetime.combine(events_ds, dt.time(12), tzinfo=dt.timezone.utc)] * e, TS),
            "duration_ms": pa.nulls(e, pa.int32()), "surface": ["homefeed"] * e}), events_ds)


def publish(lake_uri: str, index_uri: str, ds: dt.date, threads: int | None) -> float:
    from jobs.publish_index import PublishIndexConfig, run

    start = time.perf_counter()
    run(PublishIndexConfig(ds=ds, lake_uri=lake_uri, index_uri=index_uri, run_id=f"bench-{ds}", threads=threads))
    return time.perf_counter() - start


class Client(threading.Thread):
    """Sends its share of requests over one keep-alive connection; records (kind, seconds, status)."""

    def __init__(self, port: int, requests: list[tuple[str, str]], deadline: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.requests, self.deadline, self.stop = port, requests, deadline, stop
        self.records: list[tuple[str, float, float, int | str]] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        for kind, path in self.requests:
            if self.stop.is_set() or time.monotonic() > self.deadline:
                break
            start = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                status: int | str = response.status
                if status == 200:
                    json.loads(body)
            except Exception as exc:  # noqa: BLE001 (every failure is counted, none may happen)
                status = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.records.append((kind, start, time.perf_counter() - start, status))
        conn.close()


def health(port: int) -> dict | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        return json.loads(conn.getresponse().read())
    except OSError:
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-pins", type=int, default=100_000)
    parser.add_argument("--num-users", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--requests-per-kind", type=int, default=40_000,
                        help="at most this many of each kind (the run stops earlier, --after-seconds after the "
                             "new version is served)")
    parser.add_argument("--after-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_pins, args.num_users, args.requests_per_kind, args.after_seconds = 20_000, 2_000, 3000, 2.0
    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    lake_uri, index_uri = str(work / "lake"), str(work / "indexes")
    lake = Lake(lake_uri)
    pin_ids = 3_000_000_000 + np.arange(args.num_pins, dtype=np.int64) * 7
    user_ids = 1_000_000_000 + np.arange(args.num_users, dtype=np.int64)
    write_day(lake, D1, pin_ids, user_ids, args.dim, seed=1)
    first_publish_s = publish(lake_uri, index_uri, D1, None)
    print(f"day 1 published in {first_publish_s:.1f} s")

    server = subprocess.Popen(
        [sys.executable, "-m", "jobs.serve", "--index-uri", index_uri, "--lake-uri", lake_uri, "http",
         "--port", str(args.port), "--reload-interval-s", "1"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"))
    try:
        deadline = time.monotonic() + 120
        while not (h := health(args.port)) or not h["ok"]:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not come up; see {work / 'server.log'}")
            time.sleep(0.5)
        rng = np.random.default_rng(0)
        plan = []
        for i in range(args.requests_per_kind):
            plan.append(("related_pins", f"/related_pins?pin_id={pin_ids[rng.integers(len(pin_ids))]}&k=10"))
            plan.append(("user_pins", f"/user_pins?user_id={user_ids[rng.integers(len(user_ids))]}&k=10"))
            plan.append(("pinnersage", f"/pinnersage?user_id={user_ids[rng.integers(len(user_ids))]}&k=10"))
        end = time.monotonic() + args.max_seconds
        stop = threading.Event()
        clients = [Client(args.port, plan[c::args.clients], end, stop) for c in range(args.clients)]
        started = time.perf_counter()
        for c in clients:
            c.start()
        time.sleep(1.0)  # some traffic before the publish starts
        reload_start = time.perf_counter()
        write_day(lake, D2, pin_ids, user_ids, args.dim, seed=2)
        second_publish_s = publish(lake_uri, index_uri, D2, None)
        want = f"ds={D2.isoformat()}/bench-{D2.isoformat()}"
        while time.monotonic() < end:
            h = health(args.port) or {"versions": {}}
            if all(v["version"] == want for v in h["versions"].values()) and len(h["versions"]) == 2:
                break
            time.sleep(0.2)
        reloaded_at = time.perf_counter()
        time.sleep(args.after_seconds)  # traffic on the new version too
        stop.set()
        for c in clients:
            c.join()
        wall = time.perf_counter() - started
        final = health(args.port)
    finally:
        server.terminate()
        server.wait(timeout=30)

    records = [r for c in clients for r in c.records]
    failures = [r for r in records if r[3] != 200]
    reloaded = final is not None and all(v["version"] == want for v in final["versions"].values())
    metrics: dict = {"requests": len(records), "failed_requests": len(failures), "wall_seconds": wall,
                     "throughput_rps": len(records) / wall, "reloaded": reloaded,
                     "reloads": final["reloads"] if final else None,
                     "publish_day2_seconds": second_publish_s,
                     "publish_start_to_served_seconds": reloaded_at - reload_start,
                     "requests_before_publish": sum(r[1] < reload_start for r in records),
                     "requests_during_publish_and_reload": sum(reload_start <= r[1] <= reloaded_at for r in records),
                     "requests_after_reload": sum(r[1] > reloaded_at for r in records),
                     "failures_sample": [str(f[3]) for f in failures[:5]]}
    summary = []
    for kind in KINDS:
        lat = np.array([r[2] for r in records if r[0] == kind]) * 1000
        metrics[kind] = {"requests": int(len(lat)), "p50_ms": float(np.percentile(lat, 50)),
                         "p99_ms": float(np.percentile(lat, 99)), "mean_ms": float(lat.mean())}
        summary.append(f"{kind}: {len(lat)} requests, p50 {metrics[kind]['p50_ms']:.1f} ms, "
                       f"p99 {metrics[kind]['p99_ms']:.1f} ms")
    summary.insert(0, f"{len(records)} requests in {wall:.1f} s ({metrics['throughput_rps']:.0f}/s) from "
                      f"{args.clients} keep-alive clients; failed requests: {len(failures)}")
    summary.append(f"day 2 published (both spaces) in {second_publish_s:.1f} s during the load; served "
                   f"{metrics['publish_start_to_served_seconds']:.1f} s after the publish started; "
                   f"requests before / during / after: {metrics['requests_before_publish']} / "
                   f"{metrics['requests_during_publish_and_reload']} / {metrics['requests_after_reload']}; "
                   f"reloaded: {reloaded}")
    command = "bench/retrieval.py" + (" --quick" if args.quick else "")
    record(
        "retrieval", command=command,
        dataset=f"synthetic planted-topic pins: {args.num_pins:,} pins d={args.dim}, {args.num_users:,} users "
                f"(90% with a PinnerFormer embedding), 3-5 medoids each, days {D1} and {D2}",
        protocol="loopback HTTP (python -m jobs.serve http, ThreadingHTTPServer), keep-alive clients, bounded "
                 "request count and time, k=10; day 2 published and hot-reloaded during the load; latency "
                 "measured by the client; failure = any non-200, timeout or dropped connection",
        config={"num_pins": args.num_pins, "num_users": args.num_users, "dim": args.dim,
                "requests_per_kind": args.requests_per_kind, "clients": args.clients,
                "max_seconds": args.max_seconds, "index": "job defaults: M=32, efConstruction=200, flat, gate"},
        metrics=metrics, summary=summary)
    if failures or not reloaded:
        raise SystemExit(f"load test failed: {len(failures)} failed requests, reloaded={reloaded}")


if __name__ == "__main__":
    main()

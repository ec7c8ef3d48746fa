"""A tiny lake with every table the retrieval service pairs, published through jobs.publish_index."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from embeddings.data.schemas import (
    PINNERFORMER_PIN_EMBEDDINGS,
    PINNERFORMER_USER_EMBEDDINGS,
    PINS,
    USER_MEDOIDS,
    USER_SEQUENCES,
    TableSpec,
)
from embeddings.index.evaluate import GateConfig
from embeddings.lake import Lake
from jobs.publish_index import PublishIndexConfig, run
from tests.jobs.test_publish_index import write_day

D1 = dt.date(2026, 11, 1)
USERS = np.array([1_000_000_001, 1_000_000_002, 1_000_000_003])  # the third has no embedding nor medoids


def with_defaults(spec: TableSpec, columns: dict, num: int) -> pa.Table:
    """A table of ``spec`` with the given columns; every other column gets a typed zero (or an empty list)."""
    arrays = {}
    for f in spec.schema:
        if f.name in columns:
            arrays[f.name] = pa.array(columns[f.name], f.type)
        elif pa.types.is_list(f.type):
            arrays[f.name] = pa.array([[] for _ in range(num)], f.type)
        elif pa.types.is_timestamp(f.type) or pa.types.is_date(f.type):
            arrays[f.name] = pa.array([0] * num, pa.int64()).cast(pa.int32() if pa.types.is_date32(f.type)
                                                                  else pa.int64()).cast(f.type)
        elif pa.types.is_string(f.type):
            arrays[f.name] = pa.array([""] * num, f.type)
        elif pa.types.is_boolean(f.type):
            arrays[f.name] = pa.array([False] * num, f.type)
        else:
            arrays[f.name] = pa.array([0] * num, f.type)
    return pa.table(arrays)


def build_lake(tmp_path, *, ds: dt.date = D1, pinnerformer_version: str = "pinnerformer/1",
               user_version: str = "pinnerformer/1", medoid_version: str = "pinsage/1", seed: int = 0,
               publish: bool = True) -> dict:
    """Write the tables of ``ds`` and publish both spaces; returns ids to query."""
    lake = Lake(str(tmp_path / "lake"))
    pins = write_day(lake, ds, seed=seed)
    pf_pins = write_day(lake, ds, spec=PINNERFORMER_PIN_EMBEDDINGS, version=pinnerformer_version, seed=seed)
    assert (pins == pf_pins).all()
    rng = np.random.default_rng(seed)
    lake.write(PINS, with_defaults(PINS, {"pin_id": pins, "text": [f"pin text {p}" for p in pins]}, len(pins)))
    user_vecs = rng.normal(size=(2, 16)).astype(np.float32)
    user_vecs /= np.linalg.norm(user_vecs, axis=1, keepdims=True)
    lake.write(PINNERFORMER_USER_EMBEDDINGS, with_defaults(PINNERFORMER_USER_EMBEDDINGS, {
        "user_id": USERS[:2], "embedding": list(user_vecs), "model_version": [user_version] * 2,
        "pinsage_model_version": ["pinsage/1"] * 2, "computed_ds": [ds] * 2}, 2), ds)
    seen = pins[:3].tolist()
    lake.write(USER_SEQUENCES, with_defaults(USER_SEQUENCES, {
        "user_id": USERS[:2], "split": ["train", "train"], "pin_id": [seen, []],
        "action": [["save"] * 3, []], "surface": [[None] * 3, []], "duration_ms": [[None] * 3, []],
        "ts": [[dt.datetime(2026, 10, 30, tzinfo=dt.timezone.utc)] * 3, []]}, 2), ds)
    medoids = pins[[10, 200, 400, 50]]
    lake.write(USER_MEDOIDS, with_defaults(USER_MEDOIDS, {
        "user_id": [USERS[0]] * 4, "rank": [1, 2, 3, 4], "medoid_pin_id": medoids,
        "importance": [3.0, 2.0, 1.0, 0.5], "pinsage_model_version": [medoid_version] * 4,
        "computed_ds": [ds] * 4}, 4), ds)
    if publish:
        run(PublishIndexConfig(ds=ds, lake_uri=str(tmp_path / "lake"), index_uri=str(tmp_path / "idx"), m=8,
                               ef_construction=32, gate=GateConfig(num_queries=200, min_qps=1),
                               run_id=f"run-{ds}"))
    return {"pins": pins, "seen": seen, "medoids": medoids, "user_vectors": user_vecs}

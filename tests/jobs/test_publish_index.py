"""jobs.publish_index on a tiny lake: publish, gate, idempotent rerun, backfill, bad input, crash, rollback."""

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest

from embeddings.data.schemas import EVENTS, PIN_EMBEDDINGS, PINNERFORMER_PIN_EMBEDDINGS
from embeddings.index.build import IndexInputError
from embeddings.index.evaluate import GateConfig, GateFailed
from embeddings.index.publish import IndexStore, IndexStoreError, VersionRef
from embeddings.lake import Lake, LakeError
from jobs.publish_index import PublishIndexConfig, main, run
from tests.index.clustered import clustered_vectors

D1, D2, D3 = dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)
GATE = GateConfig(num_queries=200, min_qps=1)


def write_day(lake: Lake, ds: dt.date, num: int = 600, version: str = "pinsage/1", seed: int = 0,
              spec=PIN_EMBEDDINGS, vectors=None) -> np.ndarray:
    ids, vecs = clustered_vectors(num, dim=16, seed=seed)
    if vectors is not None:
        vecs = vectors(vecs)
    columns = {"pin_id": ids, "embedding": list(vecs), "model_version": [version] * num}
    if spec is PINNERFORMER_PIN_EMBEDDINGS:
        columns["pinsage_model_version"] = ["pinsage/1"] * num
    lake.write(spec, pa.table(columns), ds)
    if spec is PIN_EMBEDDINGS:
        popular = np.repeat(ids[:5], [5, 4, 3, 2, 1])  # ids[0] most engaged
        ts = dt.datetime.combine(ds, dt.time(12), tzinfo=dt.timezone.utc)
        lake.write(EVENTS, pa.table({
            "user_id": np.arange(len(popular)) + 1_000_000_000, "pin_id": popular,
            "board_id": pa.nulls(len(popular), pa.int64()), "action": ["save"] * len(popular),
            "ts": [ts] * len(popular), "duration_ms": pa.nulls(len(popular), pa.int32()),
            "surface": ["homefeed"] * len(popular)}), ds)
    return ids


def config(tmp_path, ds, **kw) -> PublishIndexConfig:
    base = dict(ds=ds, lake_uri=str(tmp_path / "lake"), index_uri=str(tmp_path / "idx"), m=8,
                ef_construction=32, gate=GATE, run_id=f"run-{ds}")
    return PublishIndexConfig(**{**base, **kw})


def test_publish_gate_manifest_and_fallback(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    ids = write_day(lake, D1)
    [pinsage, pinnerformer] = run(config(tmp_path, D1))
    assert pinnerformer.status == "skipped"  # no pinnerformer_pin_embeddings: published "when present"
    assert pinsage.status == "published" and pinsage.current == pinsage.version == "ds=2026-11-01/run-2026-11-01"
    store = IndexStore(str(tmp_path / "idx"))
    local, manifest = store.fetch(store.current("pinsage"))
    assert manifest["count"] == 600 and manifest["dimension"] == 16 and manifest["metric"] == "inner_product"
    assert manifest["gate"]["passed"] and manifest["gate"]["recall"] >= 0.95
    assert manifest["ef_search"] == manifest["gate"]["ef_search"]
    assert manifest["source"]["model_version"] == "pinsage/1" and manifest["source"]["table"] == "pin_embeddings"
    assert set(manifest["files"]) == {"index.faiss", "ids.npy", "popular.npy"}
    assert sorted(np.load(local / "ids.npy").tolist()) == sorted(ids.tolist())
    popular = np.load(local / "popular.npy")
    assert popular[:, 0].tolist() == ids[:5].tolist() and popular[:, 1].tolist() == [5, 4, 3, 2, 1]
    import faiss
    index = faiss.read_index(str(local / "index.faiss"))
    assert faiss.downcast_index(faiss.downcast_index(index).index).hnsw.efSearch == manifest["ef_search"]
    assert manifest["reorder"] == "rcm"  # the nodes were renumbered: ids.npy follows the index positions
    np.testing.assert_array_equal(np.load(local / "ids.npy"), faiss.vector_to_array(faiss.downcast_index(index).id_map))


def test_rerun_reuses_the_version_and_a_backfill_leaves_current(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    write_day(lake, D1)
    write_day(lake, D2, seed=1)
    run(config(tmp_path, D2))
    [again] = run(config(tmp_path, D2, run_id="another-run", spaces=("pinsage",)))
    assert again.status == "reused" and again.version == "ds=2026-11-02/run-2026-11-02"  # no duplicate
    [backfill] = run(config(tmp_path, D1, spaces=("pinsage",)))
    assert backfill.status == "published" and not backfill.pointer_moved
    store = IndexStore(str(tmp_path / "idx"))
    assert store.current("pinsage").ds == D2
    assert [r.ds for r in store.list_versions("pinsage")] == [D1, D2]
    main(["--space", "pinsage", "--rollback-to", "ds=2026-11-01/run-2026-11-01", "--index-uri",
          str(tmp_path / "idx")])
    assert store.current("pinsage").ds == D1


@pytest.mark.parametrize("vectors, message", [
    (lambda v: np.where(np.arange(len(v))[:, None] == 3, np.nan, v), "NaN/Inf values"),
    (lambda v: np.where(np.arange(len(v))[:, None] == 3, 0.0, v), "zero norm"),
])
def test_bad_vectors_publish_nothing(tmp_path, vectors, message):
    lake = Lake(str(tmp_path / "lake"))
    write_day(lake, D1)
    run(config(tmp_path, D1, spaces=("pinsage",)))
    write_day(lake, D2, vectors=vectors)
    with pytest.raises(IndexInputError, match=rf"pin_embeddings \(ds=2026-11-02\).*{message}"):
        run(config(tmp_path, D2, spaces=("pinsage",)))
    store = IndexStore(str(tmp_path / "idx"))
    assert store.current("pinsage").ds == D1 and [r.ds for r in store.list_versions("pinsage", complete=None)] == [D1]


def test_a_count_far_below_yesterdays_and_a_failed_gate_publish_nothing(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    write_day(lake, D1)
    run(config(tmp_path, D1, spaces=("pinsage",)))
    write_day(lake, D2, num=300)
    with pytest.raises(IndexInputError, match="300 vectors against 600 in the published version"):
        run(config(tmp_path, D2, spaces=("pinsage",)))
    write_day(lake, D3, seed=2)
    with pytest.raises(GateFailed, match="failed the gate, nothing published: .*below the floor"):
        run(config(tmp_path, D3, spaces=("pinsage",), gate=GateConfig(num_queries=100, min_qps=1e12)))
    assert IndexStore(str(tmp_path / "idx")).list_versions("pinsage", complete=None)[-1].ds == D1


def test_a_mixed_model_version_partition_is_refused(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    ids, vecs = clustered_vectors(10, dim=16)
    lake.write(PIN_EMBEDDINGS, pa.table({"pin_id": ids, "embedding": list(vecs),
                                         "model_version": ["pinsage/1"] * 5 + ["pinsage/2"] * 5}), D1)
    with pytest.raises(LakeError, match=r"mixes model_versions \['pinsage/1', 'pinsage/2'\]"):
        run(config(tmp_path, D1, spaces=("pinsage",)))


def test_a_crash_before_the_pointer_switch_keeps_readers_on_the_previous_version(tmp_path, monkeypatch):
    lake = Lake(str(tmp_path / "lake"))
    write_day(lake, D1)
    run(config(tmp_path, D1, spaces=("pinsage",)))
    write_day(lake, D2, seed=1)
    store = IndexStore(str(tmp_path / "idx"))

    def crash(*args, **kwargs):  # fault injection: the process dies after the files, before the pointer
        raise SystemExit("killed")

    monkeypatch.setattr(IndexStore, "switch_current", crash)
    with pytest.raises(SystemExit):
        run(config(tmp_path, D2, spaces=("pinsage",)))
    monkeypatch.undo()
    assert store.current("pinsage").ds == D1
    store.fetch(store.current("pinsage"))  # the previous version is complete and intact
    # A crash in the middle of writing the files: a directory without _SUCCESS that readers never see.
    partial = tmp_path / "idx" / "pinsage" / "ds=2026-11-02" / "half-written"
    partial.mkdir()
    (partial / "index.faiss").write_bytes(b"half")
    [rerun] = run(config(tmp_path, D2, spaces=("pinsage",), run_id="next"))
    assert rerun.status == "reused" and rerun.pointer_moved and rerun.current == "ds=2026-11-02/run-2026-11-02"
    assert "pinsage/ds=2026-11-02/half-written" in rerun.removed and not partial.exists()


def test_the_pinnerformer_space_is_published_when_present(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    write_day(lake, D1)
    write_day(lake, D1, spec=PINNERFORMER_PIN_EMBEDDINGS, version="pinnerformer/1", seed=4)
    results = {r.space: r for r in run(config(tmp_path, D1))}
    assert results["pinnerformer"].status == "published"
    assert results["pinnerformer"].manifest["model_version"] == "pinnerformer/1"
    assert results["pinnerformer"].manifest["source"]["pinsage_model_version"] == "pinsage/1"
    with pytest.raises(IndexStoreError, match="refusing to point pinsage/CURRENT"):
        IndexStore(str(tmp_path / "idx")).switch_current(VersionRef("pinsage", D2, "never-published"))


@pytest.mark.mlflow
def test_the_manifest_and_gate_plot_go_to_mlflow(tmp_path):
    from embeddings.registry.tracking import connect

    lake = Lake(str(tmp_path / "lake"))
    write_day(lake, D1)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run(config(tmp_path, D1, tracking_uri=tracking, artifacts_uri=str(tmp_path / "art")))
    client = connect(tracking)
    [r] = client.search_runs([client.get_experiment_by_name("indexes").experiment_id])
    assert r.data.tags["index.uri"].startswith("file://") and len(r.data.tags["index.sha256"]) == 64
    assert r.data.tags["gate.passed"] == "true" and r.data.metrics["recall_at_k"] >= 0.95
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id, "index")}
    artifacts |= {a.path for a in client.list_artifacts(r.info.run_id, "plots")}
    assert artifacts == {"index/manifest.json", "plots/pinsage_recall_vs_ef.png"}
    manifest = json.loads((tmp_path / "idx" / "pinsage" / "ds=2026-11-01" / "run-2026-11-01"
                           / "manifest.json").read_text())
    assert r.data.tags["index.sha256"] == manifest["files"]["index.faiss"]["sha256"]


def test_the_sq8_variant_is_chosen_by_config(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    write_day(lake, D1)
    [result] = run(config(tmp_path, D1, spaces=("pinsage",), variant="sq8"))
    manifest = result.manifest
    assert manifest["index_type"] == "IndexIDMap2(IndexHNSWSQ8)" and manifest["gate"]["passed"]
    assert 0 < manifest["gate"]["reconstruct_max_error"] <= 2 / 255
    [flat] = run(config(tmp_path, D1, spaces=("pinsage",), index_uri=str(tmp_path / "flat")))
    sizes = {r.manifest["variant"]: r.manifest["files"]["index.faiss"]["size"] for r in (result, flat)}
    assert sizes["flat"] - sizes["sq8"] == pytest.approx(600 * 16 * 3, rel=0.05)  # 1 byte a component, not 4


def test_an_empty_partition_is_refused_by_name(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.write(PIN_EMBEDDINGS, PIN_EMBEDDINGS.schema.empty_table(), D1)
    with pytest.raises(IndexInputError, match=r"pin_embeddings \(ds=2026-11-01\).* has no rows; refusing to publish"):
        run(config(tmp_path, D1, spaces=("pinsage",)))
    assert IndexStore(str(tmp_path / "idx")).current("pinsage") is None

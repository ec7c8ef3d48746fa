import datetime as dt
import json

import pytest

from embeddings.index.publish import (
    ChecksumMismatch,
    IndexStore,
    IndexStoreError,
    VersionRef,
    safe_run_id,
)

D1, D2, D3 = dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)


def _publish(store, tmp_path, ds, run_id="r1", payload=b"index bytes"):
    ref = VersionRef("pinsage", ds, run_id)
    src = tmp_path / f"src-{ds}-{run_id}"
    src.mkdir()
    (src / "index.faiss").write_bytes(payload)
    (src / "ids.npy").write_bytes(b"ids")
    store.publish(ref, {"index.faiss": src / "index.faiss", "ids.npy": src / "ids.npy"},
                  {"count": 3, "created_at": f"{ds}T00:00:00"})
    return ref


def test_publish_writes_files_then_manifest_then_success(tmp_path):
    store = IndexStore(str(tmp_path / "idx"))
    ref = _publish(store, tmp_path, D1)
    assert store.is_complete(ref) and store.current("pinsage") is None  # publishing does not move CURRENT
    manifest = store.read_manifest(ref)
    assert set(manifest["files"]) == {"index.faiss", "ids.npy"} and manifest["count"] == 3
    local, fetched = store.fetch(ref)
    assert (local / "index.faiss").read_bytes() == b"index bytes" and fetched == manifest
    (tmp_path / "again").mkdir()
    with pytest.raises(IndexStoreError, match="already published; versions are immutable"):
        _publish(store, tmp_path / "again", D1)


def test_current_never_moves_back_without_force(tmp_path):
    store = IndexStore(str(tmp_path / "idx"))
    new = _publish(store, tmp_path, D2)
    assert store.switch_current(new)
    old = _publish(store, tmp_path, D1)
    assert not store.switch_current(old)  # a backfill of an older day leaves CURRENT
    assert store.current("pinsage") == new
    assert store.switch_current(old, force=True, reason="rollback")
    pointer = json.loads((tmp_path / "idx" / "pinsage" / "CURRENT").read_text())
    assert pointer["version"] == old.key and pointer["previous"] == new.key and pointer["reason"] == "rollback"


def test_pointer_only_to_complete_versions(tmp_path):
    store = IndexStore(str(tmp_path / "idx"))
    ref = VersionRef("pinsage", D1, "crashed")
    (tmp_path / "idx" / "pinsage" / "ds=2026-11-01" / "crashed").mkdir(parents=True)
    with pytest.raises(IndexStoreError, match="has no _SUCCESS"):
        store.switch_current(ref)
    assert store.list_versions("pinsage", complete=False) == [ref]
    assert store.clean_incomplete("pinsage") == [ref]
    assert store.list_versions("pinsage", complete=None) == []


def test_fetch_refuses_a_tampered_or_truncated_file(tmp_path):
    store = IndexStore(str(tmp_path / "idx"))
    ref = _publish(store, tmp_path, D1)
    path = tmp_path / "idx" / "pinsage" / "ds=2026-11-01" / "r1" / "index.faiss"
    path.write_bytes(b"index bytez")  # same size, other bytes
    with pytest.raises(ChecksumMismatch, match="index.faiss does not match its manifest"):
        store.fetch(ref)
    path.write_bytes(b"index")  # truncated
    with pytest.raises(ChecksumMismatch, match="refusing to load it"):
        store.fetch(ref)


def test_retention_keeps_the_last_days_and_always_current(tmp_path):
    store = IndexStore(str(tmp_path / "idx"))
    refs = [_publish(store, tmp_path, D1 + dt.timedelta(days=i)) for i in range(5)]
    store.switch_current(refs[0], force=True)  # e.g. a rollback to the oldest
    removed = store.apply_retention("pinsage", keep_days=2)
    assert removed == refs[1:3]
    assert store.list_versions("pinsage") == [refs[0], *refs[3:]]
    assert not (tmp_path / "idx" / "pinsage" / "ds=2026-11-02").exists()


def test_versions_and_run_ids_are_spelled_safely():
    assert safe_run_id("manual__2026-11-01T02:00:00+00:00") == "manual__2026-11-01T02_00_00+00_00"
    ref = VersionRef.parse("pinsage", "ds=2026-11-01/r1")
    assert ref == VersionRef("pinsage", D1, "r1") and str(ref) == "pinsage/ds=2026-11-01/r1"
    with pytest.raises(ValueError, match="spelled ds=YYYY-MM-DD/<run_id>"):
        VersionRef.parse("pinsage", "2026-11-01")


def test_a_remote_store_is_downloaded_into_the_cache_and_verified(tmp_path):
    # Object storage goes through the same pyarrow filesystem calls; only fetch differs (it downloads).
    store = IndexStore(f"file://{tmp_path / 'idx'}")
    ref = _publish(store, tmp_path, D1)
    store.is_local = False  # take the object-storage path on a local filesystem
    local, manifest = store.fetch(ref, cache_dir=tmp_path / "cache")
    assert local == tmp_path / "cache" / "pinsage" / "ds=2026-11-01" / "r1"
    assert (local / "index.faiss").read_bytes() == b"index bytes" and set(manifest["files"]) == {"index.faiss", "ids.npy"}
    assert store.version_uri(ref) == f"file://{tmp_path / 'idx'}/pinsage/ds=2026-11-01/r1"

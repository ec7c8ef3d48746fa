"""The retrieval service's core: load the published indexes, answer three kinds of query, hot-reload.

A ``Retriever`` follows each space's ``CURRENT`` pointer (``embeddings.index.publish``), verifies every
file against the version's manifest, and loads:

* the ``pinsage`` index: related pins (by pin id) and PinnerSage queries (the user's top-3 medoids of
  ``user_medoids``, looked up in the index by ``reconstruct``, one search each, blended by
  ``interleave_lists`` in proportion to the clusters' importance, as the paper's sampling does; with
  ``pinnersage_pull`` > 0 each medoid query is first pulled toward the index's corpus direction, the unit
  mean of its vectors, as the evaluation's tuned ``pull`` does: ``embeddings.pinnersage.retrieval``);
* the ``pinnerformer`` index (pin tower): user-to-pin queries with the user's
  ``pinnerformer_user_embeddings`` row; pins in the user's ``user_sequences`` timeline (seen) are excluded.

User-side tables are read from the lake at the ds of the index they are paired with, and the pairing is
refused (``VersionRefused``, HTTP 409) when they come from another model version than the index: user
embeddings of ``pinnerformer/N`` against a pin index of ``pinnerformer/M``, or medoids computed on
``pinsage/N`` against a pin index of ``pinsage/M``. Users without an embedding (or medoids) get the
version's fallback list, the most engaged pins of the last days (``popular.npy``), marked
``"fallback": "popular"`` with the reason. An unknown pin id raises ``NotFound`` (HTTP 404).

Hot reload: ``reload()`` loads a complete new ``Snapshot`` beside the one serving and then swaps one
reference, so a request in flight finishes on the snapshot it started with and no request is dropped. A
version that fails to load (checksum mismatch, unreadable file, missing lake partition) is refused: the
previous snapshot keeps serving and the error is reported by ``health()``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np
import pyarrow.compute as pc

from embeddings.data.schemas import PINNERFORMER_USER_EMBEDDINGS, USER_MEDOIDS, USER_SEQUENCES
from embeddings.data.vectors import single_value, vector_matrix
from embeddings.index.build import stored_mean
from embeddings.index.publish import IDS_FILE, INDEX_FILE, POPULAR_FILE, IndexStore, VersionRef
from embeddings.lake import Lake, LakeError
from embeddings.pinnersage.retrieval import interleave_lists, mean_direction, pull_queries

log = logging.getLogger(__name__)

SPACES = ("pinsage", "pinnerformer")
MEDOIDS_PER_QUERY = 3  # PinnerSage: 3 medoids per request (KDD'20, 4.1)
MAX_K = 1000


class RetrievalError(RuntimeError):
    """Base class of the service's refusals (each maps to an HTTP status)."""

    status = 500


class NotFound(RetrievalError):
    status = 404


class VersionRefused(RetrievalError):
    """User vectors and a pin index of different upstream model versions."""

    status = 409


class NotLoaded(RetrievalError):
    status = 503


@dataclass(frozen=True)
class LoadedIndex:
    """One published version in memory."""

    ref: VersionRef
    manifest: dict
    index: faiss.Index
    sorted_ids: np.ndarray  # (N,) int64 pin ids, sorted: membership by binary search
    popular: np.ndarray  # (K,) int64 pin ids, most engaged first
    direction: np.ndarray | None = None  # (d,) unit mean of the stored vectors, when a pull needs it

    @property
    def model_version(self) -> str:
        return self.manifest["model_version"]

    def contains(self, pin_id: int) -> bool:
        pos = np.searchsorted(self.sorted_ids, pin_id)
        return bool(pos < len(self.sorted_ids) and self.sorted_ids[pos] == pin_id)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) scores and pin ids (``-1`` where fewer exist) at the gate's efSearch."""
        return self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)


@dataclass(frozen=True)
class UserVectors:
    """PinnerFormer user embeddings paired with the pinnerformer index, and the users' seen pins."""

    user_ids: np.ndarray  # (U,) int64 sorted
    vectors: np.ndarray  # (U, d) float32, rows in user_ids order
    seen: dict[int, np.ndarray]
    model_version: str


@dataclass(frozen=True)
class Medoids:
    """Each user's top medoids (``user_medoids``), paired with the pinsage index."""

    by_user: dict[int, tuple[np.ndarray, np.ndarray]]  # user -> (medoid pin ids, importances), rank order
    pinsage_model_version: str


@dataclass(frozen=True)
class Snapshot:
    """Everything one request reads; replaced whole on reload, never mutated."""

    indexes: dict[str, LoadedIndex]
    users: UserVectors | None
    medoids: Medoids | None
    refusals: dict[str, str] = field(default_factory=dict)  # query kind -> why it is refused
    notes: dict[str, str] = field(default_factory=dict)  # query kind -> why everyone gets the fallback
    loaded_at: str = ""

    @property
    def versions(self) -> dict[str, str]:
        return {space: loaded.ref.key for space, loaded in self.indexes.items()}


class Retriever:
    """Serves the ``CURRENT`` versions of the index store, paired with the lake's user tables."""

    def __init__(self, index_uri: str, lake_uri: str, *, spaces: Sequence[str] = SPACES,
                 cache_dir: str | None = None, pinnersage_pull: float = 0.0) -> None:
        if not np.isfinite(pinnersage_pull) or pinnersage_pull < 0:
            raise ValueError(f"pinnersage_pull must be finite and >= 0, got {pinnersage_pull}")
        self.pinnersage_pull = float(pinnersage_pull)
        self.store = IndexStore(index_uri)
        self.lake = Lake(lake_uri)
        self.spaces = tuple(spaces)
        self.cache_dir = cache_dir
        self._snapshot: Snapshot | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.last_error: str | None = None
        self.reloads = 0

    # ---- loading ---------------------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        snap = self._snapshot
        if snap is None:
            raise NotLoaded("no index version is loaded yet" + (f" (last error: {self.last_error})"
                                                                 if self.last_error else ""))
        return snap

    def reload(self) -> bool:
        """Load what the pointers name if it differs from what is served; returns whether it swapped.

        A version that fails to load leaves the served snapshot in place (``last_error`` says why)."""
        with self._reload_lock:
            current = {s: self.store.current(s) for s in self.spaces}
            wanted = {s: ref for s, ref in current.items() if ref is not None}
            served = self._snapshot.versions if self._snapshot else {}
            if {s: r.key for s, r in wanted.items()} == served:
                return False
            if not wanted:
                self.last_error = f"no space of {list(self.spaces)} has a CURRENT version in {self.store.index_uri}"
                log.warning(self.last_error)
                return False
            try:
                snapshot = self._load(wanted)
            except Exception as exc:  # keep serving the previous version, whatever failed
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("refusing to load %s: %s; still serving %s", {s: str(r) for s, r in wanted.items()},
                          self.last_error, served or "nothing")
                return False
            self._snapshot = snapshot  # one reference swap: requests in flight keep the old snapshot
            self.last_error = None
            self.reloads += 1
            log.info("serving %s (was %s)", snapshot.versions, served or "nothing")
            return True

    def _load(self, refs: dict[str, VersionRef]) -> Snapshot:
        indexes = {}
        for space, ref in refs.items():
            local, manifest = self.store.fetch(ref, self.cache_dir)  # checksums verified here
            index = faiss.read_index(str(local / INDEX_FILE))
            ids = np.load(local / IDS_FILE)
            if index.ntotal != len(ids) or len(ids) != manifest["count"]:
                raise LakeError(f"index version {ref}: {index.ntotal} vectors, {len(ids)} ids, manifest count "
                                f"{manifest['count']}")
            popular = np.load(local / POPULAR_FILE)
            direction = None
            if space == "pinsage" and self.pinnersage_pull > 0:
                try:
                    direction = mean_direction(stored_mean(index)[None, :])
                except ValueError as exc:  # a zero mean: no direction to pull toward, so the version is refused
                    raise LakeError(f"index version {ref}: {exc}") from exc
            indexes[space] = LoadedIndex(ref, manifest, index, np.sort(ids),
                                         popular[:, 0] if len(popular) else np.empty(0, np.int64), direction)
        refusals: dict[str, str] = {}
        notes: dict[str, str] = {}
        users = medoids = None
        if "pinnerformer" in indexes:
            users, why, refused = self._load_users(indexes["pinnerformer"])
            (refusals if refused else notes).update({"user_pins": why} if why else {})
        if "pinsage" in indexes:
            medoids, why, refused = self._load_medoids(indexes["pinsage"])
            (refusals if refused else notes).update({"pinnersage": why} if why else {})
        return Snapshot(indexes, users, medoids, refusals, notes,
                        dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    def _load_users(self, loaded: LoadedIndex) -> tuple[UserVectors | None, str | None, bool]:
        ds = loaded.manifest["ds"]
        if not self.lake.exists(PINNERFORMER_USER_EMBEDDINGS, ds):
            return None, f"no {self.lake.describe(PINNERFORMER_USER_EMBEDDINGS, ds)}", False
        what = self.lake.describe(PINNERFORMER_USER_EMBEDDINGS, ds)
        table = self.lake.read(PINNERFORMER_USER_EMBEDDINGS, ds,
                               columns=["user_id", "embedding", "model_version", "pinsage_model_version"])
        if table.num_rows == 0:
            return None, f"{what} is empty", False
        version = single_value(table, "model_version", what)
        pinsage_version = single_value(table, "pinsage_model_version", what)
        index_pinsage = loaded.manifest["source"].get("pinsage_model_version")
        if version != loaded.model_version or (index_pinsage and pinsage_version != index_pinsage):
            why = (f"refusing to pair user embeddings of {version} (on {pinsage_version}) from {what} with the "
                   f"pin index {loaded.ref} of {loaded.model_version} (on {index_pinsage})")
            log.error(why)
            return None, why, True
        vectors = vector_matrix(table["embedding"], what)
        if vectors.shape[1] != loaded.manifest["dimension"]:
            raise LakeError(f"{what} has {vectors.shape[1]}-dimensional users, the pin index {loaded.ref} "
                            f"{loaded.manifest['dimension']}")
        user_ids = table["user_id"].to_numpy().astype(np.int64)
        order = np.argsort(user_ids)
        seen: dict[int, np.ndarray] = {}
        if self.lake.exists(USER_SEQUENCES, ds):
            sequences = self.lake.read(USER_SEQUENCES, ds, columns=["user_id", "pin_id"])
            for user, pins in zip(sequences["user_id"].to_pylist(), sequences["pin_id"].to_numpy(
                    zero_copy_only=False)):
                seen[user] = np.unique(np.asarray(pins, dtype=np.int64))
        else:
            log.warning("no %s: user-to-pin results will not exclude seen pins",
                        self.lake.describe(USER_SEQUENCES, ds))
        return UserVectors(user_ids[order], np.ascontiguousarray(vectors[order]), seen, version), None, False

    def _load_medoids(self, loaded: LoadedIndex) -> tuple[Medoids | None, str | None, bool]:
        ds = loaded.manifest["ds"]
        what = self.lake.describe(USER_MEDOIDS, ds)
        if not self.lake.exists(USER_MEDOIDS, ds):
            return None, f"no {what}", False
        table = self.lake.read(USER_MEDOIDS, ds, columns=["user_id", "rank", "medoid_pin_id", "importance",
                                                          "pinsage_model_version"])
        if table.num_rows == 0:
            return None, f"{what} is empty", False
        version = single_value(table, "pinsage_model_version", what)
        if version != loaded.model_version:
            why = (f"refusing to pair medoids computed on {version} ({what}) with the pin index {loaded.ref} "
                   f"of {loaded.model_version}")
            log.error(why)
            return None, why, True
        table = table.filter(pc.less_equal(table["rank"], MEDOIDS_PER_QUERY)).sort_by(
            [("user_id", "ascending"), ("rank", "ascending")])
        users = table["user_id"].to_numpy()
        pins = table["medoid_pin_id"].to_numpy()
        weights = table["importance"].to_numpy()
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        ends = np.r_[starts[1:], len(users)]
        by_user = {int(users[s]): (pins[s:e], weights[s:e]) for s, e in zip(starts, ends)}
        return Medoids(by_user, version), None, False

    # ---- hot reload ------------------------------------------------------------------------------
    def watch(self, interval_s: float = 10.0) -> threading.Thread:
        """Poll the pointers every ``interval_s`` in a daemon thread (``stop()`` ends it)."""
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.reload()
                except Exception:  # a store hiccup must not kill the watcher
                    log.exception("reload check failed")
        self._watcher = threading.Thread(target=loop, name="index-watcher", daemon=True)
        self._watcher.start()
        return self._watcher

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    # ---- queries ---------------------------------------------------------------------------------
    def _open(self, kind: str, space: str, k: int) -> tuple[int, Snapshot, LoadedIndex]:
        """The checked ``k``, the snapshot this request reads from start to end, and its index of ``space``.

        Raises:
            ValueError: ``k`` out of range. NotLoaded: nothing or no such space is served.
            VersionRefused: this query kind's user side was refused at load.
        """
        k = _check_k(k)
        snap = self.snapshot
        if kind in snap.refusals:
            raise VersionRefused(snap.refusals[kind])
        return k, snap, _space(snap, space)

    def related_pins(self, pin_id: int, k: int = 10) -> dict:
        """The ``k`` nearest pins of a pin in the PinSage space (itself excluded)."""
        k, _, loaded = self._open("related_pins", "pinsage", k)
        if not loaded.contains(pin_id):
            raise NotFound(f"pin {pin_id} is not in the pinsage index {loaded.ref} ({len(loaded.sorted_ids):,} pins)")
        query = loaded.index.reconstruct(int(pin_id)).reshape(1, -1)
        scores, found = loaded.search(query, k + 1)
        results = _results(scores[0], found[0], exclude={int(pin_id)}, k=k)
        return _response("related_pins", {"pin_id": int(pin_id), "k": k}, loaded, results)

    def user_pins(self, user_id: int, k: int = 10) -> dict:
        """The ``k`` pins nearest a user's PinnerFormer embedding, the user's seen pins excluded."""
        k, snap, loaded = self._open("user_pins", "pinnerformer", k)
        users = snap.users
        pos = np.searchsorted(users.user_ids, user_id) if users is not None else 0
        if users is None or pos >= len(users.user_ids) or users.user_ids[pos] != user_id:
            reason = snap.notes.get("user_pins") or f"user {user_id} has no PinnerFormer embedding at ds={loaded.ref.ds}"
            return _fallback("user_pins", {"user_id": int(user_id), "k": k}, loaded, k, reason)
        seen = users.seen.get(int(user_id), np.empty(0, np.int64))
        scores, found = loaded.search(users.vectors[pos:pos + 1], min(k + len(seen), len(loaded.sorted_ids)))
        results = _results(scores[0], found[0], exclude=set(seen.tolist()), k=k)
        response = _response("user_pins", {"user_id": int(user_id), "k": k}, loaded, results)
        response["excluded_seen"] = int(len(seen))
        return response

    def pinnersage(self, user_id: int, k: int = 10) -> dict:
        """PinnerSage: one search per top medoid (at most 3), blended by the clusters' importance."""
        k, snap, loaded = self._open("pinnersage", "pinsage", k)
        entry = snap.medoids.by_user.get(int(user_id)) if snap.medoids is not None else None
        if entry is None:
            reason = snap.notes.get("pinnersage") or f"user {user_id} has no medoids at ds={loaded.ref.ds}"
            return _fallback("pinnersage", {"user_id": int(user_id), "k": k}, loaded, k, reason)
        pins, weights = entry
        known = np.array([loaded.contains(int(p)) for p in pins])
        pins, weights = pins[known], weights[known]
        if len(pins) == 0:
            return _fallback("pinnersage", {"user_id": int(user_id), "k": k}, loaded, k,
                             f"none of user {user_id}'s medoids is in {loaded.ref}")
        queries = np.stack([loaded.index.reconstruct(int(p)) for p in pins])
        if self.pinnersage_pull > 0:
            queries = pull_queries(queries, loaded.direction, self.pinnersage_pull)
        scores, found = loaded.search(queries, k + len(pins))
        found = np.where(np.isin(found, pins), -1, found)  # the medoids are the user's own pins
        merged = interleave_lists(found, weights, num=k)
        best = {}
        for row_scores, row_ids in zip(scores, found):
            for s, p in zip(row_scores, row_ids):
                if p >= 0:
                    best[int(p)] = max(best.get(int(p), -np.inf), float(s))
        results = [{"pin_id": int(p), "score": best[int(p)]} for p in merged]
        response = _response("pinnersage", {"user_id": int(user_id), "k": k}, loaded, results)
        response["medoids"] = [{"pin_id": int(p), "importance": float(w)} for p, w in zip(pins, weights)]
        response["pull"] = self.pinnersage_pull
        return response

    def health(self) -> dict:
        snap = self._snapshot
        return {
            "ok": snap is not None,
            "versions": {s: {"version": l.ref.key, "model_version": l.model_version, "count": l.manifest["count"],
                             "ef_search": l.manifest["ef_search"]} for s, l in (snap.indexes.items() if snap else ())},
            "refused": snap.refusals if snap else {},
            "fallback_for_everyone": snap.notes if snap else {},
            "loaded_at": snap.loaded_at if snap else None,
            "reloads": self.reloads,
            "last_error": self.last_error,
        }


def _check_k(k: int) -> int:
    k = int(k)
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K} (got {k})")
    return k


def _space(snap: Snapshot, space: str) -> LoadedIndex:
    if space not in snap.indexes:
        raise NotLoaded(f"no {space} index is published (CURRENT missing); loaded: {sorted(snap.indexes)}")
    return snap.indexes[space]


def _results(scores: np.ndarray, found: np.ndarray, exclude: set[int], k: int) -> list[dict]:
    out = []
    for s, p in zip(scores, found):
        if p >= 0 and int(p) not in exclude:
            out.append({"pin_id": int(p), "score": float(s)})
            if len(out) == k:
                break
    return out


def _response(kind: str, query: dict, loaded: LoadedIndex, results: list[dict]) -> dict:
    return {"kind": kind, "query": query, "index_version": str(loaded.ref), "model_version": loaded.model_version,
            "fallback": None, "results": results}


def _fallback(kind: str, query: dict, loaded: LoadedIndex, k: int, reason: str) -> dict:
    response = _response(kind, query, loaded, [{"pin_id": int(p), "score": None} for p in loaded.popular[:k]])
    response["fallback"] = "popular"
    response["fallback_reason"] = reason
    return response


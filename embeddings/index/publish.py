"""The index store: one immutable directory per published version, and a ``CURRENT`` pointer per space.

Layout under the index URI (a local path, ``file://`` or an object store pyarrow can open)::

    <space>/ds=<YYYY-MM-DD>/<run_id>/index.faiss     the faiss index (IndexIDMap2 over HNSW)
                                     ids.npy         the id map: int64 pin ids by index position
                                     popular.npy     the fallback list: (K, 2) int64 pin id, engagement count
                                     manifest.json   sha256 and size of each file, the index's parameters,
                                                     the gate's figures, the source table and model version
                                     _SUCCESS        written last: the version is complete
    <space>/CURRENT                  {"version": "ds=<ds>/<run_id>", ...}: what readers load

Publishing writes the data files, then ``manifest.json``, then ``_SUCCESS``, and only then switches
``CURRENT`` by writing a new pointer file and renaming it over the old one (an atomic rename on a local
filesystem, an atomic single-object PUT on an object store). Readers follow ``CURRENT`` only, so they see
the complete previous version until the switch. A directory without ``_SUCCESS`` is the leftover of a
crashed writer: ``clean_incomplete`` removes it on the next run. One writer per space at a time (the DAG
runs one run at a time; a backfill runs its days in order).

The pointer never moves to an older ``ds`` than the one it points to, unless forced (a rollback).
Retention keeps every version of the newest ``keep_days`` days that have a version and never removes the
version ``CURRENT`` points to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from embeddings.lake import _filesystem, _join, parse_ds

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.npy"
POPULAR_FILE = "popular.npy"
MANIFEST_FILE = "manifest.json"
SUCCESS_FILE = "_SUCCESS"
CURRENT_FILE = "CURRENT"
_RUN_ID_RE = re.compile(r"[^A-Za-z0-9_.+-]+")
_CHUNK = 8 << 20


class IndexStoreError(RuntimeError):
    """A version or pointer of the index store is missing or unreadable."""


class ChecksumMismatch(IndexStoreError):
    """A file of a published version does not match the sha256 its manifest records."""


def safe_run_id(run_id: str) -> str:
    """A run id usable as one path component (Airflow's ``manual__2026-11-01T02:00:00+00:00`` keeps its
    characters but ``:`` and ``/``)."""
    cleaned = _RUN_ID_RE.sub("_", run_id).strip("._")
    if not cleaned:
        raise ValueError(f"run id {run_id!r} has no usable characters")
    return cleaned


@dataclass(frozen=True, order=True)
class VersionRef:
    """One published version: ``<space>/ds=<ds>/<run_id>``."""

    space: str
    ds: dt.date
    run_id: str

    @property
    def key(self) -> str:
        return f"ds={self.ds.isoformat()}/{self.run_id}"

    @classmethod
    def parse(cls, space: str, key: str) -> VersionRef:
        """From ``ds=<YYYY-MM-DD>/<run_id>`` (the pointer's and the CLI's spelling)."""
        match = re.fullmatch(r"ds=(\d{4}-\d{2}-\d{2})/([^/]+)", key.strip())
        if not match:
            raise ValueError(f"a version of space {space} is spelled ds=YYYY-MM-DD/<run_id>, got {key!r}")
        return cls(space, parse_ds(match.group(1)), match.group(2))

    def __str__(self) -> str:
        return f"{self.space}/{self.key}"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class IndexStore:
    """Published index versions of every space under one URI."""

    def __init__(self, index_uri: str) -> None:
        self.index_uri = index_uri
        self.fs, self.root = _filesystem(index_uri)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    # ---- locations -------------------------------------------------------------------------------
    def space_path(self, space: str) -> str:
        return _join(self.root, space)

    def version_path(self, ref: VersionRef) -> str:
        return _join(self.root, ref.space, f"ds={ref.ds.isoformat()}", ref.run_id)

    def version_uri(self, ref: VersionRef) -> str:
        """Where a version lives, as a URI for people and MLflow tags."""
        if self.is_local:
            return Path(self.version_path(ref)).as_uri()
        return f"{self.index_uri.rstrip('/')}/{ref.space}/{ref.key}"

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.File

    # ---- listing ---------------------------------------------------------------------------------
    def list_versions(self, space: str, *, complete: bool | None = True) -> list[VersionRef]:
        """Versions of a space, oldest ds first (then by run id). ``complete``: True only those with
        ``_SUCCESS``, False only those without (crash leftovers), None all."""
        refs = []
        selector = pafs.FileSelector(self.space_path(space), allow_not_found=True)
        for day in self.fs.get_file_info(selector):
            if day.type != pafs.FileType.Directory or not day.base_name.startswith("ds="):
                continue
            try:
                ds = parse_ds(day.base_name[3:])
            except ValueError:
                log.warning("index store: ignoring %s (not a ds=YYYY-MM-DD directory)", day.path)
                continue
            for run in self.fs.get_file_info(pafs.FileSelector(day.path)):
                if run.type != pafs.FileType.Directory:
                    continue
                ref = VersionRef(space, ds, run.base_name)
                done = self.is_complete(ref)
                if complete is None or done == complete:
                    refs.append(ref)
        return sorted(refs)

    def is_complete(self, ref: VersionRef) -> bool:
        return self._exists(_join(self.version_path(ref), SUCCESS_FILE))

    def read_manifest(self, ref: VersionRef) -> dict:
        path = _join(self.version_path(ref), MANIFEST_FILE)
        try:
            with self.fs.open_input_stream(path) as f:
                return json.loads(f.read().decode())
        except FileNotFoundError:
            raise IndexStoreError(f"index version {ref} has no {MANIFEST_FILE} at {path}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise IndexStoreError(f"manifest {path} of index version {ref} is unreadable: {exc}") from None

    # ---- the pointer -----------------------------------------------------------------------------
    def current(self, space: str) -> VersionRef | None:
        """The version ``CURRENT`` points to, or None before the first publish."""
        path = _join(self.space_path(space), CURRENT_FILE)
        try:
            with self.fs.open_input_stream(path) as f:
                pointer = json.loads(f.read().decode())
            return VersionRef.parse(space, pointer["version"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise IndexStoreError(f"pointer {path} is unreadable: {exc}") from None

    def switch_current(self, ref: VersionRef, *, force: bool = False, reason: str = "publish") -> bool:
        """Point ``CURRENT`` at a complete version; returns whether the pointer moved.

        Without ``force`` the pointer does not move to an older ``ds`` than it points to (a backfill keeps
        today's version serving). ``force`` is the rollback.

        Raises:
            IndexStoreError: the version is not complete (no ``_SUCCESS``).
        """
        if not self.is_complete(ref):
            raise IndexStoreError(f"refusing to point {ref.space}/CURRENT at {ref}: it has no {SUCCESS_FILE}")
        now = self.current(ref.space)
        if now == ref:
            return False
        if now is not None and ref.ds < now.ds and not force:
            log.info("%s/CURRENT stays at %s: %s is an older ds (a backfill; use a rollback to force)",
                     ref.space, now, ref)
            return False
        pointer = {
            "version": ref.key,
            "previous": now.key if now else None,
            "reason": reason,
            "switched_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        final = _join(self.space_path(ref.space), CURRENT_FILE)
        tmp = _join(self.space_path(ref.space), f".{CURRENT_FILE}.{uuid.uuid4().hex}.tmp")
        with self.fs.open_output_stream(tmp) as f:
            f.write((json.dumps(pointer, indent=2) + "\n").encode())
        self.fs.move(tmp, final)  # rename: readers see the old pointer or the new one, never a partial file
        log.info("%s/CURRENT -> %s (was %s; %s)", ref.space, ref.key, now.key if now else None, reason)
        return True

    # ---- writing ---------------------------------------------------------------------------------
    def publish(self, ref: VersionRef, files: Mapping[str, str | Path], manifest: Mapping) -> dict:
        """Copy the files into the version's directory, then write the manifest, then ``_SUCCESS``.

        Args:
            ref: the new version (its directory must not hold a complete version already).
            files: name in the version -> local path.
            manifest: everything the manifest records besides the files; ``files`` is filled in here.

        Returns:
            The manifest as written (with ``files``: name -> {"sha256", "size"}).
        """
        if self.is_complete(ref):
            raise IndexStoreError(f"index version {ref} is already published; versions are immutable")
        target = self.version_path(ref)
        if self.fs.get_file_info(target).type == pafs.FileType.Directory:
            self.fs.delete_dir(target)  # a crashed attempt of the same run
        self.fs.create_dir(target, recursive=True)
        entries = {}
        for name, local in sorted(files.items()):
            entries[name] = {"sha256": sha256_file(local), "size": Path(local).stat().st_size}
            self._upload(Path(local), _join(target, name))
        written = {**manifest, "files": entries}
        with self.fs.open_output_stream(_join(target, MANIFEST_FILE)) as f:
            f.write((json.dumps(written, indent=2, default=str) + "\n").encode())
        with self.fs.open_output_stream(_join(target, SUCCESS_FILE)) as f:
            f.write(b"")
        log.info("published %s (%s)", ref, ", ".join(f"{n}: {e['size']:,} B" for n, e in entries.items()))
        return written

    def _upload(self, local: Path, path: str) -> None:
        with open(local, "rb") as src, self.fs.open_output_stream(path) as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)

    # ---- housekeeping ----------------------------------------------------------------------------
    def clean_incomplete(self, space: str, *, keep: VersionRef | None = None) -> list[VersionRef]:
        """Remove version directories without ``_SUCCESS`` (a writer crashed), except ``keep``."""
        removed = []
        for ref in self.list_versions(space, complete=False):
            if ref != keep:
                self.fs.delete_dir(self.version_path(ref))
                removed.append(ref)
                log.warning("removed incomplete index version %s (a crashed publish)", ref)
        for info in self.fs.get_file_info(pafs.FileSelector(self.space_path(space), allow_not_found=True)):
            if info.type == pafs.FileType.File and info.base_name.endswith(".tmp"):
                self.fs.delete_file(info.path)  # a pointer write that never got renamed
        return removed

    def apply_retention(self, space: str, keep_days: int) -> list[VersionRef]:
        """Remove complete versions older than the newest ``keep_days`` days that have one, except the
        version ``CURRENT`` points to; returns what was removed."""
        if keep_days <= 0:
            raise ValueError(f"keep_days must be positive (got {keep_days})")
        versions = self.list_versions(space)
        days = sorted({r.ds for r in versions}, reverse=True)
        kept_days = set(days[:keep_days])
        current = self.current(space)
        removed = []
        for ref in versions:
            if ref.ds in kept_days or ref == current:
                continue
            self.fs.delete_dir(self.version_path(ref))
            removed.append(ref)
            log.info("retention: removed %s (keeping the last %d days with a version)", ref, keep_days)
        for day in {r.ds for r in removed}:
            path = _join(self.space_path(space), f"ds={day.isoformat()}")
            if not self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
                self.fs.delete_dir(path)
        return removed

    # ---- reading ---------------------------------------------------------------------------------
    def fetch(self, ref: VersionRef, cache_dir: str | Path | None = None) -> tuple[Path, dict]:
        """A local directory holding the version's files, each checked against the manifest's sha256.

        Local stores are read in place; a remote version is downloaded into ``cache_dir`` (default a new
        temporary directory) first.

        Raises:
            IndexStoreError: the version is incomplete or its manifest unreadable.
            ChecksumMismatch: a file is missing, of another size, or its sha256 differs.
        """
        if not self.is_complete(ref):
            raise IndexStoreError(f"index version {ref} is not complete (no {SUCCESS_FILE})")
        manifest = self.read_manifest(ref)
        if self.is_local:
            local = Path(self.version_path(ref))
        else:
            local = Path(cache_dir or tempfile.mkdtemp(prefix="index-")) / ref.space / ref.key
            local.mkdir(parents=True, exist_ok=True)
            for name in manifest.get("files", {}):
                with self.fs.open_input_stream(_join(self.version_path(ref), name)) as src, \
                        open(local / name, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
        for name, entry in manifest.get("files", {}).items():
            path = local / name
            if not path.is_file():
                raise ChecksumMismatch(f"index version {ref}: {name} is missing from {local}")
            if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
                raise ChecksumMismatch(
                    f"index version {ref}: {name} does not match its manifest (sha256 {entry['sha256'][:12]}..., "
                    f"{entry['size']:,} B); refusing to load it"
                )
        return local, manifest

"""The pin-board graph as CSR arrays in both directions, saved as ``.npy`` files a process can memory-map.

Pins and boards have dense indices ``0..P-1`` and ``0..B-1``; ``pin_ids[i]`` / ``board_ids[j]`` map them
back to the lake's ids. For pin ``i`` its boards are ``pin_indices[pin_indptr[i]:pin_indptr[i+1]]``;
for board ``j`` its pins are ``board_indices[board_indptr[j]:board_indptr[j+1]]``. Neighbor lists are
sorted by index, so the arrays are a pure function of the edge set.

Files in a CSR directory: ``pin_ids.npy``, ``board_ids.npy``, ``pin_indptr.npy``, ``pin_indices.npy``,
``board_indptr.npy``, ``board_indices.npy`` and ``csr.json`` (counts and dtypes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_ARRAYS = ("pin_ids", "board_ids", "pin_indptr", "pin_indices", "board_indptr", "board_indices")


@dataclass(frozen=True)
class BipartiteCSR:
    """Bipartite pin-board adjacency. Index arrays are int32, pointer arrays int64, ids int64."""

    pin_ids: np.ndarray  # (P,) int64
    board_ids: np.ndarray  # (B,) int64
    pin_indptr: np.ndarray  # (P+1,) int64
    pin_indices: np.ndarray  # (E,) int32 board index
    board_indptr: np.ndarray  # (B+1,) int64
    board_indices: np.ndarray  # (E,) int32 pin index

    @property
    def num_pins(self) -> int:
        return len(self.pin_ids)

    @property
    def num_boards(self) -> int:
        return len(self.board_ids)

    @property
    def num_edges(self) -> int:
        return len(self.pin_indices)

    def pin_degree(self) -> np.ndarray:
        return np.diff(self.pin_indptr)

    def board_degree(self) -> np.ndarray:
        return np.diff(self.board_indptr)

    @classmethod
    def from_edges(
        cls, pin_idx: np.ndarray, board_idx: np.ndarray, pin_ids: np.ndarray, board_ids: np.ndarray
    ) -> BipartiteCSR:
        """Build both directions from deduplicated (pin index, board index) edges.

        Args:
            pin_idx: (E,) pin indices in ``0..len(pin_ids)-1``.
            board_idx: (E,) board indices in ``0..len(board_ids)-1``.
            pin_ids: (P,) int64 ids of the pin indices (isolated pins allowed).
            board_ids: (B,) int64 ids of the board indices.
        """
        pin_idx = np.asarray(pin_idx, dtype=np.int64)
        board_idx = np.asarray(board_idx, dtype=np.int64)
        num_pins, num_boards = len(pin_ids), len(board_ids)
        if len(pin_idx) != len(board_idx):
            raise ValueError(f"edge arrays differ in length: {len(pin_idx)} pins vs {len(board_idx)} boards")
        if len(pin_idx) and (pin_idx.min() < 0 or pin_idx.max() >= num_pins):
            raise ValueError(f"pin index out of range 0..{num_pins - 1}")
        if len(board_idx) and (board_idx.min() < 0 or board_idx.max() >= num_boards):
            raise ValueError(f"board index out of range 0..{num_boards - 1}")

        def one_side(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
            order = np.lexsort((dst, src))
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
            return indptr, dst[order].astype(np.int32)

        pin_indptr, pin_indices = one_side(pin_idx, board_idx, num_pins)
        board_indptr, board_indices = one_side(board_idx, pin_idx, num_boards)
        return cls(
            np.asarray(pin_ids, dtype=np.int64), np.asarray(board_ids, dtype=np.int64),
            pin_indptr, pin_indices, board_indptr, board_indices,
        )

    def save(self, path: str | Path) -> None:
        """Write the arrays as ``.npy`` files (plus ``csr.json``) into the directory ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(path / f"{name}.npy", getattr(self, name), allow_pickle=False)
        meta = {"num_pins": self.num_pins, "num_boards": self.num_boards, "num_edges": self.num_edges}
        (path / "csr.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> BipartiteCSR:
        """Load from a directory written by ``save``; memory-mapped (read-only) by default."""
        path = Path(path)
        meta_path = path / "csr.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no CSR graph at {path} (missing csr.json)")
        meta = json.loads(meta_path.read_text())
        arrays = {}
        for name in _ARRAYS:
            try:
                arrays[name] = np.load(path / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ValueError(f"CSR array {path / (name + '.npy')} is missing or corrupt: {exc}") from None
        graph = cls(**arrays)
        if (graph.num_pins, graph.num_boards, graph.num_edges) != (
            meta["num_pins"], meta["num_boards"], meta["num_edges"]
        ):
            raise ValueError(f"CSR graph at {path} does not match its csr.json counts {meta}")
        return graph

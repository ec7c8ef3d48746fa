"""Embedding tables as numpy: the (N, d) matrix of a list<float32> column, and a column's one value.

Every embedding table (docs/DATA.md) stores a vector per row as ``list<float32>`` of one length, and
stamps each row with the model version that produced it; readers turn the column into a matrix and insist
on a single version.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embeddings.lake import LakeError


def vector_matrix(column: pa.ChunkedArray | pa.Array, what: str) -> np.ndarray:
    """(N, d) float32 rows of a list column, in row order.

    Raises:
        LakeError: the lists have several lengths (named with ``what``).
    """
    lengths = pc.unique(pc.list_value_length(column)).to_pylist()
    if len(lengths) > 1:
        raise LakeError(f"{what} has embeddings of several lengths {sorted(lengths)[:5]}")
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(len(column), lengths[0] if lengths else 0)


def single_value(table: pa.Table, column: str, what: str) -> str:
    """The one value of ``column`` in every row (e.g. ``model_version``).

    Raises:
        LakeError: the rows hold several values (the first five named).
    """
    values = pc.unique(table[column]).to_pylist()
    if len(values) != 1:
        raise LakeError(f"{what} mixes {column}s {sorted(values)[:5]}; expected one")
    return values[0]

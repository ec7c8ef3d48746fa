import numpy as np
import pyarrow as pa
import pytest

from embeddings.data.vectors import single_value, vector_matrix
from embeddings.lake import LakeError


def test_vector_matrix_keeps_row_order_across_chunks():
    column = pa.chunked_array([pa.array([[1.0, 2.0]], pa.list_(pa.float32())),
                               pa.array([[3.0, 4.0], [5.0, 6.0]], pa.list_(pa.float32()))])
    np.testing.assert_array_equal(vector_matrix(column, "t"), [[1, 2], [3, 4], [5, 6]])
    assert vector_matrix(column, "t").dtype == np.float32


def test_ragged_vectors_and_mixed_versions_are_named():
    with pytest.raises(LakeError, match=r"pin_embeddings \(ds=2026-11-01\) has embeddings of several lengths \[1, 2\]"):
        vector_matrix(pa.array([[1.0], [1.0, 2.0]]), "pin_embeddings (ds=2026-11-01)")
    table = pa.table({"model_version": ["pinsage/1", "pinsage/2", "pinsage/1"]})
    with pytest.raises(LakeError, match=r"t mixes model_versions \['pinsage/1', 'pinsage/2'\]; expected one"):
        single_value(table, "model_version", "t")
    assert single_value(table.slice(0, 1), "model_version", "t") == "pinsage/1"

from __future__ import annotations

import numpy as np
import pytest

from embeddings.data.features import TextHasher, content_features

TEXTS = ["red leather shoes", "red leather boots", "deep blue ocean waves", "", "blue ocean surf"]


def test_deterministic_fixed_dim_unit_rows():
    a = content_features(np.arange(5), TEXTS, text_dim=64)
    b = content_features(np.arange(5), list(TEXTS), text_dim=64)
    assert a.shape == (5, 64) and a.dtype == np.float32
    assert a.tobytes() == b.tobytes()
    norms = np.linalg.norm(a, axis=1)
    np.testing.assert_allclose(norms[[0, 1, 2, 4]], 1.0, atol=1e-5)
    assert norms[3] == 0.0  # empty text


def test_similar_texts_are_closer():
    x = content_features(np.arange(5), TEXTS, text_dim=256)
    assert x[0] @ x[1] > x[0] @ x[2]
    assert x[2] @ x[4] > x[2] @ x[1]


def test_idf_downweights_a_word_in_every_document():
    hasher = TextHasher(text_dim=1024, char_weight=0.0)
    x = hasher.transform(["common alpha", "common beta", "common gamma"])
    common = hasher.counts(["common"]).indices[0]
    rare = hasher.counts(["alpha"]).indices[0]
    assert x[0, common] < x[0, rare]


def test_user_features_are_concatenated_and_checked():
    x = content_features(np.array([1, 2]), ["a b", "c d"], [[3.0, 4.0], None], text_dim=16)
    assert x.shape == (2, 18)
    np.testing.assert_allclose(x[0, 16:], [0.6, 0.8], atol=1e-6)
    assert (x[1, 16:] == 0).all()
    with pytest.raises(ValueError, match=r"NaN/Inf values for 1 pin\(s\), e.g. pin_id \[2\]"):
        content_features(np.array([1, 2]), ["a", "b"], [[1.0], [float("nan")]], text_dim=8)
    with pytest.raises(ValueError, match=r"must all have one length, found lengths \[1, 2\]"):
        content_features(np.array([1, 2]), ["a", "b"], [[1.0], [1.0, 2.0]], text_dim=8)


def test_bitwise_deterministic_across_hashers_and_independent_of_pin_ids():
    a = TextHasher(text_dim=128).transform(TEXTS)
    b = TextHasher(text_dim=128).transform(list(reversed(TEXTS)))[::-1]
    assert a.tobytes() == b.tobytes()  # IDF depends on the corpus, not on its order
    c = content_features(np.array([10, 20, 30, 40, 50]), TEXTS, text_dim=128)
    assert c.tobytes() == a.tobytes()


@pytest.mark.parametrize("dim", [1, 8, 300])
def test_fixed_dim_whatever_the_text_length(dim):
    texts = ["x", "a much longer text " * 50, "", "unicode café 東京"]
    x = content_features(np.arange(4), texts, text_dim=dim)
    assert x.shape == (4, dim) and x.dtype == np.float32 and np.isfinite(x).all() and (x >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), [1, 1, 0, 1], atol=1e-5)


def test_case_does_not_matter_but_words_do():
    x = content_features(np.arange(3), ["Red Shoes", "red shoes", "green hat"], text_dim=512)
    assert x[0].tobytes() == x[1].tobytes() and x[0] @ x[2] < 0.5


def test_all_empty_texts_give_zero_rows():
    x = TextHasher(text_dim=16).transform(["", "", ""])
    assert x.shape == (3, 16) and (x == 0).all()


def test_bad_text_dim_is_rejected():
    with pytest.raises(ValueError, match="text_dim must be positive, got 0"):
        TextHasher(text_dim=0)


def test_l2_normalize_keeps_zero_rows():
    from embeddings.data.features import l2_normalize

    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_user_features_absent_everywhere_or_inf():
    from embeddings.data.features import stack_user_features

    assert stack_user_features(np.array([1, 2]), [None, None]) is None
    x = content_features(np.array([1, 2]), ["a", "b"], [None, None], text_dim=8)
    assert x.shape == (2, 8)
    with pytest.raises(ValueError, match=r"NaN/Inf values for 2 pin\(s\), e.g. pin_id \[7, 9\]"):
        stack_user_features(np.array([7, 8, 9]), [[float("inf")], [1.0], [float("nan")]])

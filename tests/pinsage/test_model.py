"""The PinSage convolution and model: shapes, invariants, pooling semantics, config round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embeddings.pinsage.model import PinSageConfig, PinSageConv, _CsrMax, build_model, csr_matrix
from embeddings.pinsage.sampling import pooling_weights
from tests.pinsage.tiny_data import one_torch_thread  # noqa: F401 (a fixture)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conv(pooling: str = "importance", in_dim: int = 8, hidden: int = 6, out: int = 5) -> PinSageConv:
    torch.manual_seed(0)
    return PinSageConv(in_dim, hidden, out, pooling)


# Literal graph: 5 source nodes, 3 targets (= sources 0..2). Target 0 <- {1, 3}, target 1 <- {4}, target 2 isolated.
SRC = torch.tensor([1, 3, 4])
DST = torch.tensor([0, 0, 1])
EDGE_INDEX = torch.stack([SRC, DST])


def test_conv_output_shape_and_unit_norm():
    conv = _conv()
    x = torch.randn(5, 8)
    out = conv((x, x[:3]), EDGE_INDEX, torch.tensor([0.25, 0.75, 1.0]))
    assert out.shape == (3, 5)
    norms = out.norm(dim=1)
    assert torch.allclose(norms[norms > 0], torch.ones_like(norms[norms > 0]), atol=1e-6)
    assert torch.isfinite(out).all()


def test_importance_pooling_with_one_hot_weights_is_that_neighbors_message():
    conv = _conv()
    x = torch.randn(5, 8)
    messages = conv.neighbor_messages(x)
    pooled = conv.pool(messages, EDGE_INDEX, torch.tensor([0.0, 1.0, 1.0]), num_dst=3)
    assert torch.allclose(pooled[0], messages[3])
    assert torch.allclose(pooled[1], messages[4])


def test_importance_pooling_is_the_visit_weighted_mean():
    conv = _conv()
    x = torch.randn(5, 8)
    messages = conv.neighbor_messages(x)
    w = pooling_weights(np.array([[1.0, 3.0]], np.float32), np.array([[True, True]]), "importance")
    pooled = conv.pool(messages, EDGE_INDEX[:, :2], torch.from_numpy(w[0]), num_dst=1)
    assert torch.allclose(pooled[0], 0.25 * messages[1] + 0.75 * messages[3], atol=1e-6)


def test_mean_pooling_equals_uniform_weights_whatever_the_visit_counts():
    conv = _conv("mean")
    x = torch.randn(5, 8)
    messages = conv.neighbor_messages(x)
    w = pooling_weights(np.array([[0.9, 0.1]], np.float32), np.array([[True, True]]), "mean")
    assert np.allclose(w, 0.5)
    pooled = conv.pool(messages, EDGE_INDEX[:, :2], torch.from_numpy(w[0]), num_dst=1)
    assert torch.allclose(pooled[0], (messages[1] + messages[3]) / 2, atol=1e-6)


def test_max_pooling_is_the_elementwise_max_and_ignores_weights():
    conv = _conv("max")
    x = torch.randn(5, 8)
    messages = conv.neighbor_messages(x)
    pooled = conv.pool(messages, EDGE_INDEX, None, num_dst=3)
    assert torch.allclose(pooled[0], torch.maximum(messages[1], messages[3]))
    assert torch.allclose(pooled[1], messages[4])


@pytest.mark.parametrize("pooling", ["importance", "mean", "max"])
def test_isolated_target_is_embedded_from_its_own_features(pooling):
    conv = _conv(pooling)
    x = torch.randn(5, 8)
    weights = None if pooling == "max" else torch.tensor([0.5, 0.5, 1.0])
    out = conv((x, x[:3]), EDGE_INDEX, weights)
    messages = conv.neighbor_messages(x)
    assert torch.equal(conv.pool(messages, EDGE_INDEX, weights, num_dst=3)[2], torch.zeros(6))
    expected = conv.combine(x[2:3], torch.zeros(1, 6))
    assert torch.allclose(out[2], expected[0])


def test_sparse_fused_path_equals_message_passing_path_with_gradients():
    conv = _conv()
    x = torch.randn(5, 8, requires_grad=True)
    weight = torch.tensor([0.25, 0.75, 1.0])
    out_edges = conv((x, x[:3]), EDGE_INDEX, weight)
    (g_edges,) = torch.autograd.grad(out_edges.square().sum(), x)
    adj = csr_matrix(torch.tensor([0, 2, 3, 3]), SRC, weight, (3, 5))
    adj_t = csr_matrix(torch.tensor([0, 0, 1, 1, 2, 3]), torch.tensor([0, 0, 1]), torch.tensor([0.25, 0.75, 1.0]),
                       (5, 3))
    for transpose in (adj_t, None):  # precomputed transpose, and torch's own
        out_sparse = conv((x, x[:3]), adj, adj_transpose=transpose)
        (g_sparse,) = torch.autograd.grad(out_sparse.square().sum(), x)
        assert torch.allclose(out_edges, out_sparse, atol=1e-6)
        assert torch.allclose(g_edges, g_sparse, atol=1e-6)


def test_sparse_max_path_equals_pyg_scatter_max_with_gradients():
    """The fused CSR max (``_CsrMax``) against PyG's ``aggr="max"`` on the (2, E) path: values, the isolated
    target's zeros, and the gradients of the inputs and of every parameter, on varying degrees."""
    torch.manual_seed(3)
    num_src, num_dst = 40, 25
    degree = torch.randint(0, 7, (num_dst,))
    degree[[0, 7]] = 0  # isolated targets
    dst = torch.repeat_interleave(torch.arange(num_dst), degree)
    src = torch.randint(0, num_src, (len(dst),))
    ptr = torch.zeros(num_dst + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(degree, 0)
    adj = csr_matrix(ptr, src, torch.ones(len(src)), (num_dst, num_src))
    conv = _conv("max")
    results = []
    for edges in (torch.stack([src, dst]), adj):
        x = torch.randn(num_src, 8, generator=torch.Generator().manual_seed(5)).requires_grad_()
        conv.zero_grad()
        out = conv((x, x[:num_dst]), edges)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), x.grad, [q.grad.clone() for q in conv.parameters()]))
    (out_pyg, gx_pyg, gp_pyg), (out_csr, gx_csr, gp_csr) = results
    assert torch.allclose(out_pyg, out_csr, atol=1e-6)
    assert torch.allclose(gx_pyg, gx_csr, atol=1e-6)
    for a, b in zip(gp_pyg, gp_csr, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    messages = conv.neighbor_messages(torch.randn(num_src, 8))
    assert torch.equal(conv.pool(messages, adj, None, num_dst=num_dst)[[0, 7]], torch.zeros(2, 6))


def test_sparse_max_of_negative_messages_is_not_clipped_at_zero():
    """The padding is -inf, not 0: a row whose messages are all negative keeps its (negative) max."""
    messages = torch.tensor([[-3.0, -1.0], [-2.0, -5.0], [4.0, 0.5]], requires_grad=True)
    adj = csr_matrix(torch.tensor([0, 2, 2, 3]), torch.tensor([0, 1, 2]), torch.ones(3), (3, 3))
    out = _CsrMax.apply(messages, adj)
    assert torch.equal(out, torch.tensor([[-2.0, -1.0], [0.0, 0.0], [4.0, 0.5]]))
    out.sum().backward()
    assert torch.equal(messages.grad, torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))


def test_conv_rejects_missing_weights():
    x = torch.randn(5, 8)
    with pytest.raises(ValueError, match="importance pooling needs edge weights"):
        _conv()((x, x[:3]), EDGE_INDEX)


def test_model_has_k_layers_and_head_and_outputs_unit_norm():
    config = PinSageConfig(in_dim=8, hidden_dim=16, embedding_dim=4, num_neighbors=3)
    model = build_model(config)
    assert len(model.convs) == 2
    h = torch.rand(7, 16)
    z = model.head(h)
    assert z.shape == (7, 4)
    assert torch.allclose(z.norm(dim=1), torch.ones(7), atol=1e-6)


def test_config_round_trip_and_state_dict_rebuild():
    config = PinSageConfig(in_dim=8, hidden_dim=16, embedding_dim=4, num_layers=3, pooling="max", num_neighbors=7)
    assert PinSageConfig.from_dict(config.to_dict()) == config
    model = build_model(config)
    twin = build_model(PinSageConfig.from_dict(config.to_dict()))
    twin.load_state_dict(model.state_dict())  # same shapes from the config alone


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_dim": 0}, "in_dim must be a positive integer, got 0"),
        ({"in_dim": 8, "pooling": "sum"}, "pooling must be one of .*got 'sum'"),
        ({"in_dim": 8, "num_neighbors": -1}, "num_neighbors must be a positive integer"),
        ({"in_dim": 8, "id_dim": -1}, "id_dim must be a non-negative integer, got -1"),
        ({"in_dim": 8, "id_dim": 4}, "num_ids and id_dim are both 0 .* got num_ids=0, id_dim=4"),
        ({"in_dim": 8, "num_ids": 10}, "num_ids and id_dim are both 0 .* got num_ids=10, id_dim=0"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PinSageConfig(**kwargs)


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown PinSageConfig field\(s\) \['dropout'\]"):
        PinSageConfig.from_dict({"in_dim": 8, "dropout": 0.1})


def test_model_rejects_wrong_number_of_blocks():
    model = build_model(PinSageConfig(in_dim=4, hidden_dim=4, embedding_dim=4))
    with pytest.raises(ValueError, match="PinSage has 2 layers but got 1 blocks"):
        model(torch.randn(3, 4), [None])


def test_id_vectors_start_at_zero_and_are_appended_to_the_features():
    model = build_model(PinSageConfig(in_dim=4, hidden_dim=6, embedding_dim=5, num_ids=10, id_dim=3))
    assert model.convs[0].neighbor_linear.in_features == 7 and not model.id_embedding.weight.any()
    model.id_embedding.weight.data[2] = torch.tensor([1.0, 2.0, 3.0])
    x = torch.ones(2, 4)
    assert model.inputs(x, torch.tensor([2, 5])).tolist() == [[1, 1, 1, 1, 1, 2, 3], [1, 1, 1, 1, 0, 0, 0]]
    with pytest.raises(ValueError, match="learns id vectors .*pass the pins' rows as ids"):
        model.inputs(x, None)
    assert build_model(PinSageConfig(in_dim=4)).inputs(x, None) is x  # the paper's model: features only

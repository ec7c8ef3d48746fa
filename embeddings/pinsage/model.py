"""The PinSage model (Ying et al., KDD'18, arXiv 1806.01973, Algorithms 1-2).

One convolution (Algorithm 1) turns a node's representation ``h_u`` and its neighbors' ``h_v`` into

    n_u = pool_v ReLU(Q h_v + q)            importance pooling: weighted mean by PPR visit weight
    z_u = ReLU(W [h_u ; n_u] + w)           concat(self, neighbors)
    z_u = z_u / ||z_u||

``K`` such layers are stacked on the pins' content features (so any pin with features can be embedded,
also one never seen in training), followed by the head ``G2 ReLU(G1 z + g)`` and, as in this project's
output contract, a final L2 normalization.

Optionally (``id_dim > 0``, off by default and not in the paper) a learned per-pin id vector is appended to
the content features, as DGL's PinSAGE example does for its item ids. The table starts at zeros and only the
rows a training batch reaches move, so a pin that no batch reached is embedded from its content features
alone. A pin with no training saves can still be reached (as a uniform negative), so "unseen" is not the same
as "unreached". The ids are the rows of the feature matrix the model was trained on, so such a model only
embeds that matrix.

The pooling weights are computed once, in numpy, by ``embeddings.pinsage.sampling.pooling_weights``
(importance: visit weights normalized per target; mean: ``1/deg``) and passed to the convolution as
edge weights; the convolution itself sums ``weight * message`` (or takes the max for max pooling).
The model is rebuilt from ``PinSageConfig`` alone (``build_model``), so a ``state_dict`` is all that is
stored: no pickled code.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

POOLINGS = ("importance", "mean", "max")


@dataclass(frozen=True)
class PinSageConfig:
    """Everything needed to rebuild the network (and nothing about training).

    Args:
        in_dim: length of the content feature vector of a pin.
        hidden_dim: size of every convolution's output and of the neighbor messages.
        embedding_dim: size of the final pin embedding (the head's output).
        num_layers: number of convolutions K (the paper uses 2).
        pooling: ``importance`` (weighted mean by visit weight), ``mean`` or ``max`` (the paper's ablations).
        num_neighbors: T, the top-T PPR neighbors each pin aggregates (the paper uses 50).
        num_ids: rows of the learned id table (the number of pins trained on); 0 with ``id_dim`` 0.
        id_dim: width of the learned per-pin id vector appended to the features (0: none, the paper's model).
    """

    in_dim: int
    hidden_dim: int = 256
    embedding_dim: int = 256
    num_layers: int = 2
    pooling: str = "importance"
    num_neighbors: int = 50
    num_ids: int = 0
    id_dim: int = 0

    def __post_init__(self) -> None:
        for name in ("in_dim", "hidden_dim", "embedding_dim", "num_layers", "num_neighbors", "num_ids", "id_dim"):
            value = getattr(self, name)
            smallest = 0 if name in ("num_ids", "id_dim") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
                kind = "a non-negative" if smallest == 0 else "a positive"
                raise ValueError(f"PinSageConfig.{name} must be {kind} integer, got {value!r}")
        if (self.num_ids == 0) != (self.id_dim == 0):
            raise ValueError(f"PinSageConfig.num_ids and id_dim are both 0 (no id vectors) or both positive, "
                             f"got num_ids={self.num_ids}, id_dim={self.id_dim}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"PinSageConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PinSageConfig:
        """Rebuild from ``to_dict()`` output; unknown keys are an error (a newer format, or a typo)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PinSageConfig field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)


class _CsrWeightedSum(torch.autograd.Function):
    """``adj @ messages`` for a CSR ``adj``, with the transposed CSR given for the gradient.

    torch would otherwise transpose the sparse matrix on every backward pass; the batch loader builds
    the transpose ahead of time (off the training thread), which halves the backward time on CPU.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, messages: Tensor, adj: Tensor, adj_transpose: Tensor | None) -> Tensor:
        # The matrices are constants (no gradient), so keeping them on ctx creates no reference cycle.
        ctx.adj, ctx.adj_transpose = adj, adj_transpose
        return torch.sparse.mm(adj, messages)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        adj_transpose = ctx.adj_transpose
        if adj_transpose is None:
            adj_transpose = ctx.adj.t().to_sparse_csr()
        return torch.sparse.mm(adj_transpose, grad_out.contiguous()), None, None


class _CsrMax(torch.autograd.Function):
    """Element-wise max of each CSR row's messages (``adj``'s values are ignored); 0 for an empty row.

    PyG's scatter-max materializes an (E, hidden) message array and its gradient; on CPU that trains
    about 8x slower than the fused weighted sum. Here the rows' source indices are padded into a
    (num_dst, max_degree) matrix (the padding points at a row of -inf), the max and its argmax come from
    one dense reduction, and the gradient is a scatter of ``grad_out`` onto the argmax sources only.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, messages: Tensor, adj: Tensor) -> Tensor:
        ptr, cols = adj.crow_indices(), adj.col_indices()
        num_dst, num_src = adj.size(0), messages.size(0)
        degree = ptr[1:] - ptr[:-1]
        width = int(degree.max()) if num_dst else 0
        if width == 0:
            ctx.argmax_src, ctx.num_src = None, num_src
            return messages.new_zeros((num_dst, messages.size(1)))
        dst = torch.repeat_interleave(torch.arange(num_dst, device=cols.device), degree)
        slot = torch.arange(cols.numel(), device=cols.device) - ptr[:-1][dst]
        index = torch.full((num_dst, width), num_src, dtype=torch.long, device=cols.device)
        index[dst, slot] = cols.long()
        padded = torch.cat([messages, messages.new_full((1, messages.size(1)), float("-inf"))])
        values, arg = padded[index].max(dim=1)  # (num_dst, hidden) each
        empty = (degree == 0).unsqueeze(1)
        ctx.argmax_src, ctx.num_src = index.gather(1, arg), num_src  # empty rows point at the padding row
        return values.masked_fill(empty, 0.0)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        grad = grad_out.new_zeros((ctx.num_src + 1, grad_out.size(1)))
        if ctx.argmax_src is not None:
            grad.scatter_add_(0, ctx.argmax_src, grad_out.contiguous())
        return grad[:ctx.num_src], None


class PinSageConv(MessagePassing):
    """One PinSage convolution (Algorithm 1 of the paper) as a PyG ``MessagePassing`` layer.

    Args:
        in_dim: size of the input representations ``h``.
        hidden_dim: size of the neighbor messages ``ReLU(Q h + q)``.
        out_dim: size of the output ``z``.
        pooling: ``importance`` / ``mean`` (weighted sum of messages by the given edge weights) or
            ``max`` (element-wise max of messages; edge weights ignored).

    Shapes:
        x: (N, in_dim) or a pair (x_src (N_src, in_dim), x_dst (N_dst, in_dim)).
        edge_index: (2, E) [source; target] indices, or a torch sparse CSR matrix of shape
            (N_dst, N_src) whose values are the pooling weights (the fused, faster path; max pooling
            ignores the values and reduces each row with ``_CsrMax``).
        edge_weight: (E,) pooling weights for a (2, E) ``edge_index`` (they must already be normalized
            per target: see ``sampling.pooling_weights``).
        adj_transpose: optional sparse CSR (N_src, N_dst), the transpose of a sparse ``edge_index``,
            used only for the gradient (saves a transposition per backward pass).
        output: (N_dst, out_dim), each row unit-norm (a row that ReLU zeroes stays zero).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, pooling: str = "importance") -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        super().__init__(aggr="max" if pooling == "max" else "sum", flow="source_to_target")
        self.pooling = pooling
        self.neighbor_linear = nn.Linear(in_dim, hidden_dim)  # Q, q
        self.update_linear = nn.Linear(in_dim + hidden_dim, out_dim)  # W, w

    def forward(
        self,
        x: Tensor | tuple[Tensor, Tensor],
        edge_index: Tensor,
        edge_weight: Tensor | None = None,
        adj_transpose: Tensor | None = None,
    ) -> Tensor:
        x_src, x_dst = x if isinstance(x, tuple) else (x, x)
        messages = self.neighbor_messages(x_src)
        pooled = self.pool(messages, edge_index, edge_weight, num_dst=x_dst.size(0), adj_transpose=adj_transpose)
        return self.combine(x_dst, pooled)

    def neighbor_messages(self, x_src: Tensor) -> Tensor:
        """ReLU(Q h + q) of every source node, computed once per node: (N_src, in_dim) -> (N_src, hidden)."""
        return F.relu(self.neighbor_linear(x_src))

    def pool(
        self,
        messages: Tensor,
        edge_index: Tensor,
        edge_weight: Tensor | None,
        num_dst: int,
        adj_transpose: Tensor | None = None,
    ) -> Tensor:
        """Pool the neighbors' messages into each target: (N_src, hidden) -> (N_dst, hidden).

        Targets without neighbors get zeros (isolated pins are embedded from their own features).
        ``adj_transpose`` (sparse CSR (N_src, N_dst)) is an optional precomputed transpose of a sparse
        ``edge_index``, used only for the gradient.
        """
        sparse = edge_index.layout == torch.sparse_csr
        if not sparse and self.pooling != "max" and edge_weight is None:
            raise ValueError(f"{self.pooling} pooling needs edge weights (see sampling.pooling_weights)")
        # One propagate call site: PyG generates propagate's signature from the calls in this class.
        return self.propagate(
            edge_index,
            x=(messages, None),
            edge_weight=None if self.pooling == "max" else edge_weight,
            adj_transpose=adj_transpose,
            size=None if sparse else (messages.size(0), num_dst),
        )

    def combine(self, x_dst: Tensor, pooled: Tensor) -> Tensor:
        """z = normalize(ReLU(W [h_u ; n_u] + w)): (N_dst, in_dim), (N_dst, hidden) -> (N_dst, out_dim)."""
        z = F.relu(self.update_linear(torch.cat([x_dst, pooled.to(x_dst.dtype)], dim=-1)))
        return F.normalize(z, p=2.0, dim=-1)

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else x_j * edge_weight.unsqueeze(-1).to(x_j.dtype)

    def message_and_aggregate(
        self, adj_t: Tensor, x: tuple[Tensor, Tensor | None], adj_transpose: Tensor | None
    ) -> Tensor:
        if self.pooling == "max":
            return _CsrMax.apply(x[0], adj_t)
        return _CsrWeightedSum.apply(x[0], adj_t, adj_transpose)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.neighbor_linear.in_features}, "
                f"{self.update_linear.out_features}, pooling={self.pooling})")


@dataclass(frozen=True)
class Block:
    """One layer of a computation graph on the model's device: edges from src nodes into dst nodes.

    The dst nodes are the first ``num_dst`` src nodes (so ``h_dst = h_src[:num_dst]``). Built from
    ``sampling.BlockArrays`` by ``sampling.BlockArrays.to_torch``.

    Attributes:
        adj: sparse CSR (num_dst, num_src) with the pooling weights (ones for max pooling).
        adj_transpose: sparse CSR (num_src, num_dst), the transpose of ``adj`` (for the gradient of the
            weighted sum).
    """

    num_src: int
    num_dst: int
    adj: Tensor
    adj_transpose: Tensor


class PinSage(nn.Module):
    """K PinSage convolutions and the ``G2 ReLU(G1 .)`` head (Algorithm 2); outputs unit-norm embeddings."""

    def __init__(self, config: PinSageConfig) -> None:
        super().__init__()
        self.config = config
        self.id_embedding = None
        if config.id_dim:
            self.id_embedding = nn.Embedding(config.num_ids, config.id_dim)
            nn.init.zeros_(self.id_embedding.weight)  # pins no batch reaches keep their content features alone
        dims = [config.in_dim + config.id_dim] + [config.hidden_dim] * config.num_layers
        self.convs = nn.ModuleList(
            PinSageConv(dims[k], config.hidden_dim, dims[k + 1], config.pooling) for k in range(config.num_layers)
        )
        self.head_hidden = nn.Linear(config.hidden_dim, config.hidden_dim)  # G1, g
        self.head_out = nn.Linear(config.hidden_dim, config.embedding_dim, bias=False)  # G2

    def forward(self, x: Tensor, blocks: list[Block], ids: Tensor | None = None) -> Tensor:
        """Embed the targets of a computation graph.

        Args:
            x: (N_0, in_dim) features of the first block's src nodes.
            blocks: ``num_layers`` blocks, input side first; the last block's dst nodes are the targets.
            ids: (N_0,) the src nodes' pin rows; needed (only) when the model learns id vectors.

        Returns:
            (N_K, embedding_dim) unit-norm embeddings of the targets, in the last block's dst order.
        """
        if len(blocks) != len(self.convs):
            raise ValueError(f"PinSage has {len(self.convs)} layers but got {len(blocks)} blocks")
        h = self.inputs(x, ids)
        for conv, block in zip(self.convs, blocks, strict=True):
            if h.size(0) != block.num_src:
                raise ValueError(f"a block expects {block.num_src} source rows, got {h.size(0)}")
            h_dst = h[: block.num_dst]
            h = conv((h, h_dst), block.adj, adj_transpose=block.adj_transpose)
        return self.head(h)

    def inputs(self, x: Tensor, ids: Tensor | None) -> Tensor:
        """The first layer's input: the features, with each pin's id vector appended when the model has them."""
        if self.id_embedding is None:
            return x
        if ids is None:
            raise ValueError(f"this PinSage learns id vectors (id_dim={self.config.id_dim}): "
                             "pass the pins' rows as ids")
        return torch.cat([x, self.id_embedding(ids).to(x.dtype)], dim=-1)

    def head(self, h: Tensor) -> Tensor:
        """normalize(G2 ReLU(G1 h + g)): (N, hidden_dim) -> (N, embedding_dim)."""
        return F.normalize(self.head_out(F.relu(self.head_hidden(h))), p=2.0, dim=-1)


def csr_matrix(ptr: Tensor, index: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """A torch sparse CSR matrix (rows ``ptr``, columns ``index``) without torch's beta-feature warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(ptr, index, values, size=size, check_invariants=False)


def build_model(config: PinSageConfig) -> PinSage:
    """A freshly initialised model for ``config`` (load a ``state_dict`` into it to restore one)."""
    return PinSage(config)

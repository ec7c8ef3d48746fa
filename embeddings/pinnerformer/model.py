"""The PinnerFormer model (Pancha et al., KDD'22, arXiv 2205.04507, Sec. 3): a user tower and a pin tower.

User tower, per token of a user's time-ordered actions (oldest first, right-padded):

    x_i = [pin_i ; action_emb(a_i) ; surface_emb(s_i) ; log1p(duration_i) ; time features of t_i]
    h_i = W x_i + pos_emb(i)                                (i counted from the oldest kept action)
          (or sqrt(D) x_i + pos_emb(i) with ``token_input="scaled"``, SASRec's input, see the config)
    h   = pre-norm causal transformer(h), padding masked
    u_i = normalize(MLP(h_i))                               (one embedding per position)

and the user embedding is ``u`` at the latest position. ``pin_i`` is the pin's PinSage embedding (a
learned unknown-pin vector where the PinSage table has none) or, for id-only data such as the S3-Rec
files, a learned item-id embedding: a departure from the paper used only where no PinSage exists. Id-only
items may also carry content, the way PinSage's inputs do: with ``num_attributes`` > 0 an item's vector is
its id embedding plus the mean of its attributes' learned embeddings (S3-Rec's item attributes).

Time features (Sec. 3.2): for each of three times, the absolute timestamp, the time since the latest
action of the sequence, and the gap since the previous action, and each fixed period ``P`` of
``time_periods_s``, the pair ``sin(2 pi t / P + phi), cos(2 pi t / P + phi)`` with a learned phase
``phi`` per (time, period); the two relative times also enter as ``log1p(hours)``. Angles are computed
from int64 seconds (``t mod P``), so no precision is lost to float32 epoch seconds.

The time since the latest action is, as in the paper, relative to the sequence's latest input action:
it is the one feature through which a later token (its timestamp only) reaches earlier positions. Every
other feature and the attention are causal: position ``i`` sees tokens ``0..i`` only.

Pin tower: ``normalize(MLP(pin vector))`` over the same pin inputs. The softmax temperature is learned
and clamped at ``min_temperature`` (0.01). For id-only data, ``output="tied_dot"`` swaps both towers'
ends for SASRec's: the user embedding unnormalized, the item-id table as the pin embeddings, dot-product
logits without a temperature (see the config). ``build_model`` rebuilds the network from the config alone,
so a ``state_dict`` is all that is stored.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embeddings.data.schemas import ACTION_VALUES

FEATURES = ("action", "surface", "duration", "time")
INITS = ("default", "xavier")
TOKEN_INPUTS = ("project", "scaled")
OUTPUTS = ("normalized", "tied_dot")
HOUR_S, DAY_S, WEEK_S = 3600, 86_400, 604_800
# The three times that get periodic features, in this order.
TIME_KINDS = ("absolute", "since_latest", "gap")


@dataclass(frozen=True)
class PinnerFormerConfig:
    """Everything needed to rebuild the network (and nothing about training).

    Args:
        pin_dim: length of the input pin vectors (the PinSage embedding); unused when ``num_items`` > 0.
        num_items: > 0 selects id-only mode: a learned item-id embedding of ``item_dim`` for rows
            ``0..num_items-1`` stands in for PinSage (S3-Rec files); 0 = PinSage mode.
        item_dim: size of the learned item-id embedding (id-only mode).
        num_attributes: > 0 (id-only mode): items carry attribute ids ``0..num_attributes-1``, and an item's
            vector is its id embedding plus the mean of its attributes' learned ``item_dim`` embeddings
            (zero for an item without any). ``PinnerFormer.set_item_attributes`` gives the item -> attributes
            table, which the ``state_dict`` stores; 0 = the id embedding alone.
        max_item_attributes: the most attributes one item has (the width of that table).
        model_dim: transformer width.
        embedding_dim: size of the user and pin embeddings (the paper: 256).
        num_layers, num_heads: transformer depth and heads.
        ff_dim: width of each block's feed-forward layer.
        dropout: dropout on the token projection, attention and feed-forward outputs.
        max_length: M, the most tokens a sequence may have (learned positions 0..M-1).
        num_surfaces: surface codes ``0..num_surfaces-1`` (0 = unknown; ``data.SURFACES``).
        action_dim, surface_dim: sizes of the learned action and surface embeddings.
        features: which token features besides the pin are used (ablations): a subset of ``FEATURES``.
        time_periods_s: the fixed periods (seconds) of the time features.
        pin_hidden_dim: hidden width of the pin tower's MLP.
        initial_temperature, min_temperature: the learned softmax temperature's start and clamp.
        user_head: True: the user embedding is ``normalize(MLP(h))``; False: ``normalize(h)`` (the final
            LayerNorm's output; needs ``embedding_dim == model_dim``), as a plain SASRec.
        init: ``default`` (PyTorch's: embedding tables N(0, 1), the item-id table N(0, 1/item_dim), linear
            layers Kaiming-uniform) or ``xavier`` (Xavier-normal for every weight matrix and embedding table,
            zero biases: SASRec's). The time features' phases start at zero either way.
        token_input: ``project`` (a learned linear projection of the token features to ``model_dim``)
            or ``scaled`` (no projection: the token features times ``sqrt(model_dim)``, SASRec's input;
            needs the features to be ``model_dim`` wide, e.g. id-only with ``item_dim == model_dim`` and
            no other features). With Xavier init on S3-Rec Beauty's shapes the projected item vectors
            start about 10x smaller than the learned positions; scaled ones start at about their size.
        output: ``normalized`` (the paper's: unit-norm user and pin-tower embeddings, logits are cosines over
            the learned temperature) or ``tied_dot`` (SASRec's output: the user embedding is the head's
            output unnormalized, a pin's embedding is its item vector (its row of the item-id table, plus
            its attributes' mean with ``num_attributes``), the same vectors the input uses, there is no pin
            tower and no temperature, and logits are plain dot products; needs id-only mode with
            ``item_dim == embedding_dim``). ``PinnerFormer.similarity`` says how the embeddings are to be
            compared: ``cosine`` or ``dot``.
    """

    pin_dim: int = 256
    num_items: int = 0
    item_dim: int = 64
    num_attributes: int = 0
    max_item_attributes: int = 0
    model_dim: int = 256
    embedding_dim: int = 256
    num_layers: int = 2
    num_heads: int = 4
    ff_dim: int = 1024
    dropout: float = 0.1
    max_length: int = 256
    num_surfaces: int = 4
    action_dim: int = 16
    surface_dim: int = 16
    features: tuple[str, ...] = FEATURES
    time_periods_s: tuple[int, ...] = (HOUR_S, DAY_S, WEEK_S, 4 * WEEK_S)
    pin_hidden_dim: int = 256
    initial_temperature: float = 0.07
    min_temperature: float = 0.01
    user_head: bool = True
    init: str = "default"
    token_input: str = "project"
    output: str = "normalized"

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "time_periods_s", tuple(int(p) for p in self.time_periods_s))
        for name in ("pin_dim", "item_dim", "model_dim", "embedding_dim", "num_layers", "num_heads", "ff_dim",
                     "max_length", "num_surfaces", "action_dim", "surface_dim", "pin_hidden_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"PinnerFormerConfig.{name} must be a positive integer, got {value!r}")
        if self.num_items < 0:
            raise ValueError(f"PinnerFormerConfig.num_items must be >= 0 (0 = PinSage inputs), got {self.num_items}")
        if self.num_attributes < 0 or self.max_item_attributes < 0:
            raise ValueError(f"PinnerFormerConfig.num_attributes and max_item_attributes must be >= 0, got "
                             f"{self.num_attributes} and {self.max_item_attributes}")
        if self.num_attributes and not (self.id_only and self.max_item_attributes):
            raise ValueError(f"item attributes (num_attributes={self.num_attributes}) need id-only mode "
                             f"(num_items > 0, got {self.num_items}) and max_item_attributes > 0 "
                             f"(got {self.max_item_attributes})")
        if self.model_dim % self.num_heads:
            raise ValueError(f"model_dim ({self.model_dim}) must be divisible by num_heads ({self.num_heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"PinnerFormerConfig.dropout must lie in [0, 1), got {self.dropout}")
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown PinnerFormerConfig.features {unknown}; known are {FEATURES}")
        if any(p <= 0 for p in self.time_periods_s):
            raise ValueError(f"time_periods_s must be positive seconds, got {self.time_periods_s}")
        if self.init not in INITS:
            raise ValueError(f"PinnerFormerConfig.init must be one of {INITS}, got {self.init!r}")
        if self.token_input not in TOKEN_INPUTS:
            raise ValueError(f"PinnerFormerConfig.token_input must be one of {TOKEN_INPUTS}, got {self.token_input!r}")
        if self.token_input == "scaled" and self.token_dim != self.model_dim:
            raise ValueError(f"token_input='scaled' adds the token features to the positions unprojected: they are "
                             f"{self.token_dim} wide, model_dim is {self.model_dim}")
        if self.output not in OUTPUTS:
            raise ValueError(f"PinnerFormerConfig.output must be one of {OUTPUTS}, got {self.output!r}")
        if self.output == "tied_dot" and not (self.id_only and self.item_dim == self.embedding_dim):
            raise ValueError(f"output='tied_dot' scores users against the item-id table itself: it needs id-only mode "
                             f"(num_items > 0, got {self.num_items}) and item_dim ({self.item_dim}) equal to "
                             f"embedding_dim ({self.embedding_dim})")
        if not self.user_head and self.embedding_dim != self.model_dim:
            raise ValueError(f"without a user head the user embedding is the transformer's output: embedding_dim "
                             f"({self.embedding_dim}) must equal model_dim ({self.model_dim})")
        if not 0 < self.min_temperature <= self.initial_temperature:
            raise ValueError(f"need 0 < min_temperature <= initial_temperature, got {self.min_temperature} "
                             f"and {self.initial_temperature}")

    @property
    def id_only(self) -> bool:
        return self.num_items > 0

    @property
    def pin_input_dim(self) -> int:
        return self.item_dim if self.id_only else self.pin_dim

    @property
    def token_dim(self) -> int:
        """Width of a token's features before the projection (the pin vector and the chosen features)."""
        widths = {"action": self.action_dim, "surface": self.surface_dim, "duration": 2,
                  "time": time_feature_dim(len(self.time_periods_s))}
        return self.pin_input_dim + sum(widths[f] for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PinnerFormerConfig:
        """Rebuild from ``to_dict()`` output; unknown keys are an error (a newer format, or a typo)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PinnerFormerConfig field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)


@dataclass
class TokenInputs:
    """A batch of right-padded token sequences (``data.collate_sequences`` builds it).

    Attributes:
        pins: (B, L) int64 pin rows; in PinSage mode ``-1`` = a pin missing from the table (the
            unknown-pin vector); padding positions hold any valid row.
        actions: (B, L) int64 ``Action`` codes.
        surfaces: (B, L) int64 surface codes (0 = unknown).
        duration_s: (B, L) float32 seconds, NaN = unknown.
        ts: (B, L) int64 UTC seconds.
        mask: (B, L) bool, True on real tokens; each row's real tokens come first.
    """

    pins: Tensor
    actions: Tensor
    surfaces: Tensor
    duration_s: Tensor
    ts: Tensor
    mask: Tensor

    def to(self, device: torch.device) -> TokenInputs:
        return TokenInputs(**{f.name: getattr(self, f.name).to(device, non_blocking=True)
                              for f in dataclasses.fields(self)})

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(dim=1)


def time_feature_dim(num_periods: int) -> int:
    """Width of ``TimeFeatures``' output: sin and cos per (time, period), and two log1p(hours)."""
    return 2 * len(TIME_KINDS) * num_periods + 2


class TimeFeatures(nn.Module):
    """Periodic features with learned phases of the absolute, since-latest and gap times of each token."""

    def __init__(self, periods_s: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("periods", torch.tensor(periods_s, dtype=torch.int64), persistent=False)
        self.phase = nn.Parameter(torch.zeros(len(TIME_KINDS), len(periods_s)))

    @property
    def out_dim(self) -> int:
        return time_feature_dim(len(self.phase[0]))

    def forward(self, ts: Tensor, mask: Tensor) -> Tensor:
        """(B, L) int64 seconds, (B, L) bool -> (B, L, out_dim) float32."""
        lengths = mask.sum(dim=1).clamp_min(1)
        latest = ts.gather(1, (lengths - 1).unsqueeze(1))  # (B, 1) the latest real action
        since_latest = (latest - ts).clamp_min(0)
        gap = torch.cat([torch.zeros_like(ts[:, :1]), (ts[:, 1:] - ts[:, :-1]).clamp_min(0)], dim=1)
        times = torch.stack([ts, since_latest, gap], dim=2)  # (B, L, 3) int64
        # t mod P in int64, then the angle in float32: exact whatever the epoch.
        angle = (2 * math.pi) * (torch.remainder(times.unsqueeze(-1), self.periods).float() / self.periods.float())
        angle = angle + self.phase  # (B, L, 3, nP)
        periodic = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(2)
        log_hours = torch.log1p(torch.stack([since_latest, gap], dim=2).float() / HOUR_S)
        return torch.cat([periodic, log_hours], dim=2)


class CausalBlock(nn.Module):
    """A pre-norm transformer block: ``x + attn(LN(x))``, then ``x + FF(LN(x))``."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Linear(ff_dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """x: (B, L, D); allowed: (B, 1, L, L) bool, True where query i may attend to key j."""
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.num_heads, dim // self.num_heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, L, hs)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                              dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.out(attn.transpose(1, 2).reshape(b, length, dim)))
        return x + self.drop(self.ff(self.norm2(x)))


class PinnerFormer(nn.Module):
    """The user and pin towers and the learned temperature.

    In PinSage mode the pin vectors are not parameters: ``attach_pin_table`` gives the model a
    (P, pin_dim) table (not saved in the ``state_dict``), rows with ``known`` False use the learned
    unknown-pin vector, and so does row ``-1``.
    """

    def __init__(self, config: PinnerFormerConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.id_only:
            self.item_embedding = nn.Embedding(c.num_items, c.item_dim)
            nn.init.normal_(self.item_embedding.weight, std=c.item_dim ** -0.5)
            if c.num_attributes:
                self.attribute_embedding = nn.Embedding(c.num_attributes, c.item_dim)
                nn.init.normal_(self.attribute_embedding.weight, std=c.item_dim ** -0.5)
                # item row -> its attribute ids, -1 = none; saved with the weights (it is part of the model).
                self.register_buffer("item_attributes",
                                     torch.full((c.num_items, c.max_item_attributes), -1, dtype=torch.int64))
        else:
            self.unknown_pin = nn.Parameter(torch.zeros(c.pin_dim))
            self.register_buffer("pin_table", torch.zeros(0, c.pin_dim), persistent=False)
            self.register_buffer("pin_known", torch.zeros(0, dtype=torch.bool), persistent=False)
        if "action" in c.features:
            self.action_embedding = nn.Embedding(len(ACTION_VALUES), c.action_dim)
        if "surface" in c.features:
            self.surface_embedding = nn.Embedding(c.num_surfaces, c.surface_dim)
        if "time" in c.features:
            self.time_features = TimeFeatures(c.time_periods_s)
        # token_dim: the pin vector, the action/surface embeddings, log1p(duration) + known flag, time features.
        self.project = nn.Linear(c.token_dim, c.model_dim) if c.token_input == "project" else None
        self.position = nn.Embedding(c.max_length, c.model_dim)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(CausalBlock(c.model_dim, c.num_heads, c.ff_dim, c.dropout)
                                    for _ in range(c.num_layers))
        self.final_norm = nn.LayerNorm(c.model_dim)
        self.user_head = (nn.Sequential(nn.Linear(c.model_dim, c.model_dim), nn.GELU(),
                                        nn.Linear(c.model_dim, c.embedding_dim)) if c.user_head else nn.Identity())
        if c.output == "normalized":
            self.pin_tower = nn.Sequential(nn.Linear(c.pin_input_dim, c.pin_hidden_dim), nn.GELU(),
                                           nn.Linear(c.pin_hidden_dim, c.embedding_dim))
            self.log_temperature = nn.Parameter(torch.tensor(math.log(c.initial_temperature)))
        # tied_dot: no pin tower and no temperature (parameters without a gradient would trouble DDP).
        if c.init == "xavier":
            for name, param in self.named_parameters():
                if param.dim() > 1 and name.endswith("weight"):  # not the time features' phases
                    nn.init.xavier_normal_(param)
                elif name.endswith(".bias"):
                    nn.init.zeros_(param)

    # ---- pins ----

    def attach_pin_table(self, vectors: Tensor, known: Tensor | None = None) -> None:
        """Give a PinSage-mode model its (P, pin_dim) pin vectors; ``known`` (P,) bool marks real rows.

        Raises:
            ValueError: in id-only mode, or a table of the wrong shape or with non-finite known rows.
        """
        if self.config.id_only:
            raise ValueError("an id-only PinnerFormer (num_items > 0) learns its item vectors; it takes no pin table")
        vectors = torch.as_tensor(vectors, dtype=torch.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.config.pin_dim:
            raise ValueError(f"pin table must be (P, {self.config.pin_dim}), got {tuple(vectors.shape)}")
        known = (torch.ones(len(vectors), dtype=torch.bool) if known is None
                 else torch.as_tensor(known, dtype=torch.bool))
        if known.shape != (len(vectors),):
            raise ValueError(f"known must have one flag per pin row ({len(vectors)}), got {tuple(known.shape)}")
        if not torch.isfinite(vectors[known]).all():
            raise ValueError("pin table has NaN or Inf in rows marked known; mark them unknown or fix the table")
        device = self.unknown_pin.device
        self.pin_table, self.pin_known = vectors.to(device), known.to(device)

    def set_item_attributes(self, attributes: Tensor) -> None:
        """Give an id-only model with ``num_attributes`` > 0 its (num_items, max_item_attributes) item ->
        attribute ids table, ``-1`` padding.

        Raises:
            ValueError: the model has no attributes, or the table has the wrong shape or ids out of range.
        """
        c = self.config
        if not c.num_attributes:
            raise ValueError("this PinnerFormer has no item attributes (num_attributes = 0)")
        attributes = torch.as_tensor(attributes, dtype=torch.int64)
        if attributes.shape != (c.num_items, c.max_item_attributes):
            raise ValueError(f"item attributes must be ({c.num_items}, {c.max_item_attributes}), "
                             f"got {tuple(attributes.shape)}")
        if len(attributes) and not bool(((attributes >= -1) & (attributes < c.num_attributes)).all()):
            raise ValueError(f"item attribute ids must lie in [0, {c.num_attributes}) or be -1 (none)")
        self.item_attributes.copy_(attributes)

    @property
    def num_pins(self) -> int:
        return self.config.num_items if self.config.id_only else len(self.pin_table)

    def pin_inputs(self, rows: Tensor) -> Tensor:
        """(...) int64 pin rows -> (..., pin_input_dim) pin vectors (the unknown-pin vector for -1 / unknown)."""
        if self.config.id_only:
            rows = rows.clamp_min(0)
            vectors = self.item_embedding(rows)
            if self.config.num_attributes:  # the mean over each item's attributes, as one weighted bag
                attributes = self.item_attributes[rows.reshape(-1)]  # (n, A)
                present = (attributes >= 0).float()
                weights = present / present.sum(dim=1, keepdim=True).clamp_min(1)
                mean = F.embedding_bag(attributes.clamp_min(0), self.attribute_embedding.weight,
                                       per_sample_weights=weights, mode="sum")
                vectors = vectors + mean.view(*rows.shape, -1)
            return vectors
        if len(self.pin_table) == 0:
            raise ValueError("this PinSage-mode model has no pin table; call attach_pin_table first")
        safe = rows.clamp_min(0)
        known = (rows >= 0) & self.pin_known[safe]
        return torch.where(known.unsqueeze(-1), self.pin_table[safe], self.unknown_pin.to(self.pin_table.dtype))

    @property
    def similarity(self) -> str:
        """How user and pin embeddings compare: ``cosine`` (unit-norm towers) or ``dot`` (``tied_dot``)."""
        return "dot" if self.config.output == "tied_dot" else "cosine"

    def embed_pins(self, rows: Tensor) -> Tensor:
        """(...) pin rows -> (..., embedding_dim) pin embeddings: unit-norm pin-tower outputs, or with
        ``output="tied_dot"`` the item vectors themselves (``pin_inputs``)."""
        if self.config.output == "tied_dot":
            return self.pin_inputs(rows).float()
        return F.normalize(self.pin_tower(self.pin_inputs(rows)).float(), dim=-1)

    # ---- users ----

    @property
    def temperature(self) -> Tensor:
        """The learned softmax temperature, clamped at ``min_temperature`` (1, fixed, with ``tied_dot``)."""
        if self.config.output == "tied_dot":
            return torch.ones((), device=self.position.weight.device)
        return self.log_temperature.exp().clamp_min(self.config.min_temperature)

    def tokens(self, inputs: TokenInputs) -> Tensor:
        """(B, L, in_dim) token features before the projection."""
        parts = [self.pin_inputs(inputs.pins)]
        c = self.config
        if "action" in c.features:
            parts.append(self.action_embedding(inputs.actions))
        if "surface" in c.features:
            parts.append(self.surface_embedding(inputs.surfaces))
        if "duration" in c.features:
            known = torch.isfinite(inputs.duration_s)
            seconds = torch.where(known, inputs.duration_s, torch.zeros_like(inputs.duration_s)).clamp_min(0)
            parts += [torch.log1p(seconds).unsqueeze(-1), known.float().unsqueeze(-1)]
        if "time" in c.features:
            parts.append(self.time_features(inputs.ts, inputs.mask))
        return torch.cat([p.float() for p in parts], dim=-1)

    def forward(self, inputs: TokenInputs) -> Tensor:
        """Per-position user embeddings.

        Args:
            inputs: (B, L) right-padded tokens, L <= ``max_length``, at least one real token per row.

        Returns:
            (B, L, embedding_dim) embeddings, unit-norm unless ``output="tied_dot"``; row ``b`` position
            ``i`` depends only on tokens ``0..i`` of row ``b`` (and the latest timestamp, see the module
            docstring). Padding positions hold finite values that mean nothing.
        """
        b, length = inputs.mask.shape
        if length > self.config.max_length:
            raise ValueError(f"sequences of length {length} exceed max_length {self.config.max_length}")
        if not bool(inputs.mask[:, 0].all()):
            raise ValueError("every sequence needs at least one real token, first (right padding)")
        positions = torch.arange(length, device=inputs.mask.device)
        tokens = self.tokens(inputs)
        tokens = self.project(tokens) if self.project is not None else tokens * self.config.model_dim ** 0.5
        h = self.drop(tokens + self.position(positions))
        # Causal, padding keys masked; a padding query sees itself so that no softmax row is empty.
        causal = torch.ones(length, length, dtype=torch.bool, device=h.device).tril()
        allowed = causal & (inputs.mask.unsqueeze(1) | torch.eye(length, dtype=torch.bool, device=h.device))
        allowed = allowed.unsqueeze(1)  # (B, 1, L, L)
        for block in self.blocks:
            h = block(h, allowed)
        out = self.user_head(self.final_norm(h)).float()
        return out if self.config.output == "tied_dot" else F.normalize(out, dim=-1)

    def embed_users(self, inputs: TokenInputs) -> Tensor:
        """(B, embedding_dim) user embeddings: each row's output at its latest real token."""
        out = self(inputs)
        latest = (inputs.lengths - 1).clamp_min(0)
        return out[torch.arange(len(out), device=out.device), latest]


def build_model(config: PinnerFormerConfig) -> PinnerFormer:
    """A freshly initialized model (seed torch before calling it for reproducible weights)."""
    return PinnerFormer(config)

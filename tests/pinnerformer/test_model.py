"""The PinnerFormer towers: shapes, unit norms, causality, padding, temperature clamp, unknown pins."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from embeddings.pinnerformer.model import PinnerFormerConfig, TokenInputs, build_model
from tests.pinnerformer.tiny_data import T0, one_torch_thread, tiny_config  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tokens(b: int = 3, length: int = 6, num_pins: int = 40, seed: int = 0) -> TokenInputs:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length, length - 2, 1][:b] + [length] * max(b - 3, 0))
    mask = torch.arange(length)[None, :] < lengths[:, None]
    gaps = torch.randint(60, 100_000, (b, length), generator=g)
    return TokenInputs(
        pins=torch.randint(0, num_pins, (b, length), generator=g),
        actions=torch.randint(0, 4, (b, length), generator=g),
        surfaces=torch.randint(0, 4, (b, length), generator=g),
        duration_s=torch.rand(b, length, generator=g) * 30,
        ts=T0 + gaps.cumsum(dim=1),
        mask=mask,
    )


def _replace(tokens: TokenInputs, **values) -> TokenInputs:
    return dataclasses.replace(tokens, **{k: v.clone() for k, v in values.items()})


def _model(**overrides):
    torch.manual_seed(0)
    return build_model(tiny_config(**overrides)).eval()


def test_config_rejects_bad_values_and_round_trips():
    with pytest.raises(ValueError, match="num_heads"):
        tiny_config(model_dim=10, num_heads=4)
    with pytest.raises(ValueError, match="unknown PinnerFormerConfig.features"):
        tiny_config(features=("action", "weather"))
    with pytest.raises(ValueError, match="min_temperature"):
        tiny_config(min_temperature=0.0)
    with pytest.raises(ValueError, match="num_layers must be a positive integer"):
        tiny_config(num_layers=0)
    config = tiny_config()
    assert PinnerFormerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown PinnerFormerConfig field"):
        PinnerFormerConfig.from_dict({**config.to_dict(), "depth": 3})


def test_outputs_have_the_right_shapes_and_unit_norm():
    model, tokens = _model(), _tokens()
    out = model(tokens)
    assert out.shape == (3, 6, 16)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3, 6))
    users = model.embed_users(tokens)
    assert users.shape == (3, 16)
    torch.testing.assert_close(users[1], out[1, 3])  # row 1 has 4 real tokens: its latest is position 3
    torch.testing.assert_close(users[2], out[2, 0])
    pins = model.embed_pins(torch.arange(40))
    assert pins.shape == (40, 16)
    torch.testing.assert_close(pins.norm(dim=-1), torch.ones(40))


@pytest.mark.parametrize("field", ["pins", "actions", "surfaces", "duration_s", "ts"])
def test_a_later_token_does_not_change_earlier_positions(field):
    model, tokens = _model(), _tokens(b=1, length=8)
    changed = getattr(tokens, field).clone()
    j = 5  # not the latest token (see the next test for the latest timestamp)
    if field == "ts":
        changed[0, j] -= 30  # still in order, still before the latest
    elif field == "duration_s":
        changed[0, j] += 100.0
    else:
        changed[0, j] = (changed[0, j] + 1) % 4
    before, after = model(tokens), model(_replace(tokens, **{field: changed}))
    torch.testing.assert_close(after[0, :j], before[0, :j], rtol=0, atol=0)
    assert not torch.allclose(after[0, j], before[0, j])


def test_the_latest_timestamp_reaches_earlier_positions_only_through_time_since_latest():
    tokens = _tokens(b=1, length=8)
    ts = tokens.ts.clone()
    ts[0, -1] += 86_400
    with_time, without_time = _model(), _model(features=("action", "surface", "duration"))
    assert not torch.allclose(with_time(_replace(tokens, ts=ts))[0, :7], with_time(tokens)[0, :7])
    torch.testing.assert_close(without_time(_replace(tokens, ts=ts))[0, :7], without_time(tokens)[0, :7],
                               rtol=0, atol=0)


def test_padding_length_and_content_do_not_change_real_positions():
    model, tokens = _model(), _tokens(b=3, length=6)
    out = model(tokens)
    # Pad every row to 10 with junk: real positions must not move.
    pad = 4
    wide = TokenInputs(
        pins=torch.cat([tokens.pins, torch.full((3, pad), 7)], dim=1),
        actions=torch.cat([tokens.actions, torch.full((3, pad), 2)], dim=1),
        surfaces=torch.cat([tokens.surfaces, torch.full((3, pad), 3)], dim=1),
        duration_s=torch.cat([tokens.duration_s, torch.full((3, pad), 999.0)], dim=1),
        ts=torch.cat([tokens.ts, tokens.ts[:, -1:].expand(3, pad) + 5], dim=1),
        mask=torch.cat([tokens.mask, torch.zeros(3, pad, dtype=torch.bool)], dim=1),
    )
    junk = _replace(tokens, pins=torch.where(tokens.mask, tokens.pins, 0),
                    actions=torch.where(tokens.mask, tokens.actions, 3))
    wide_out, junk_out = model(wide), model(junk)
    assert torch.isfinite(wide_out).all()
    for b, n in enumerate(tokens.lengths.tolist()):
        torch.testing.assert_close(wide_out[b, :n], out[b, :n], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(junk_out[b, :n], out[b, :n], rtol=1e-5, atol=1e-6)
    # A row alone gives the same user embedding as in a padded batch.
    alone = TokenInputs(**{f.name: getattr(tokens, f.name)[2:3, :1] for f in dataclasses.fields(tokens)})
    torch.testing.assert_close(model.embed_users(alone)[0], model.embed_users(tokens)[2], rtol=1e-5, atol=1e-6)


def test_temperature_is_learned_and_clamped_at_the_minimum():
    model = _model()
    assert model.temperature.item() == pytest.approx(0.07)
    with torch.no_grad():
        model.log_temperature.fill_(math.log(0.001))
    assert model.temperature.item() == pytest.approx(0.01)
    model.temperature.backward()
    assert model.log_temperature.grad.item() == 0.0  # below the clamp, no gradient pushes it further


def test_unknown_pins_use_the_learned_unknown_token():
    torch.manual_seed(0)
    model = build_model(tiny_config(num_items=0, pin_dim=8)).eval()
    with pytest.raises(ValueError, match="no pin table"):
        model.embed_pins(torch.arange(3))
    table = torch.randn(5, 8)
    known = torch.tensor([True, True, False, True, True])
    model.attach_pin_table(table, known)
    with torch.no_grad():
        model.unknown_pin.copy_(torch.arange(8.0))
    inputs = model.pin_inputs(torch.tensor([0, -1, 2, 4]))
    torch.testing.assert_close(inputs[0], table[0])
    torch.testing.assert_close(inputs[1], torch.arange(8.0))  # row -1: missing from the table
    torch.testing.assert_close(inputs[2], torch.arange(8.0))  # a row marked unknown
    torch.testing.assert_close(inputs[3], table[4])
    with pytest.raises(ValueError, match=r"pin table must be \(P, 8\)"):
        model.attach_pin_table(torch.randn(5, 3))
    bad = table.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.attach_pin_table(bad)
    with pytest.raises(ValueError, match="takes no pin table"):
        _model().attach_pin_table(table)


def test_pinsage_mode_state_dict_holds_no_pin_table():
    torch.manual_seed(0)
    model = build_model(tiny_config(num_items=0, pin_dim=8))
    model.attach_pin_table(torch.randn(5, 8))
    assert "pin_table" not in model.state_dict() and "unknown_pin" in model.state_dict()
    assert not any(k.startswith("item_embedding") for k in model.state_dict())


def test_rejects_sequences_longer_than_max_length():
    with pytest.raises(ValueError, match="exceed max_length 4"):
        _model(max_length=4)(_tokens(length=6))


def test_xavier_init_draws_xavier_tables_zero_biases_and_is_reproducible():
    default, xavier = _model(), _model(init="xavier")
    assert default.position.weight.std() > 0.8  # PyTorch's N(0, 1) embedding table
    assert xavier.position.weight.std() < 0.5
    assert all(float(b.abs().max()) == 0.0 for n, b in xavier.named_parameters() if n.endswith(".bias"))
    again = _model(init="xavier")
    for (name, a), (_, b) in zip(xavier.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(ValueError, match="init must be one of"):
        tiny_config(init="orthogonal")


def test_without_a_user_head_the_embedding_is_the_normalized_transformer_output():
    model, tokens = _model(user_head=False), _tokens()
    assert isinstance(model.user_head, torch.nn.Identity)
    out = model(tokens)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3, 6))
    with pytest.raises(ValueError, match="embedding_dim .* must equal model_dim"):
        tiny_config(user_head=False, embedding_dim=8, model_dim=16)


def test_token_dim_is_the_width_of_the_token_features():
    for features in ((), ("action",), ("duration", "time"), ("action", "surface", "duration", "time")):
        model = _model(features=features)
        assert model.tokens(_tokens()).shape[-1] == model.config.token_dim
        assert model.project.in_features == model.config.token_dim


def test_scaled_token_input_is_the_item_vector_times_sqrt_d_without_a_projection():
    scaled, tokens = _model(features=(), token_input="scaled"), _tokens()
    assert scaled.project is None
    assert not any(name.startswith("project.") for name in scaled.state_dict())
    # The same weights with a projection fixed at sqrt(d) * I and no bias give the same outputs.
    projected = _model(features=())
    missing, unexpected = projected.load_state_dict(scaled.state_dict(), strict=False)
    assert sorted(missing) == ["project.bias", "project.weight"] and not unexpected
    with torch.no_grad():
        projected.project.weight.copy_(math.sqrt(16) * torch.eye(16))
        projected.project.bias.zero_()
    torch.testing.assert_close(scaled(tokens), projected(tokens))
    # An older config without the field loads as the projection.
    old = {k: v for k, v in tiny_config().to_dict().items() if k != "token_input"}
    assert PinnerFormerConfig.from_dict(old).token_input == "project"
    with pytest.raises(ValueError, match="token features .* 24 wide, model_dim is 16"):
        tiny_config(features=("action", "surface"), token_input="scaled")
    with pytest.raises(ValueError, match="token_input must be one of"):
        tiny_config(token_input="concat")


def test_tied_dot_output_scores_the_unnormalized_user_against_the_item_table():
    tied, tokens = _model(features=(), token_input="scaled", output="tied_dot"), _tokens()
    assert tied.similarity == "dot" and tied.temperature.item() == 1.0
    names = set(tied.state_dict())
    assert not any(n.startswith(("pin_tower.", "log_temperature")) for n in names)
    rows = torch.tensor([[3, 0], [39, 7]])
    torch.testing.assert_close(tied.embed_pins(rows), tied.item_embedding.weight[rows])  # tied: the input table
    out = tied(tokens)
    assert not torch.allclose(out.norm(dim=-1), torch.ones(3, 6))
    # The same weights under the normalized output give the same directions: only the norm differs.
    normalized = _model(features=(), token_input="scaled")
    missing, unexpected = normalized.load_state_dict(tied.state_dict(), strict=False)
    assert sorted(missing) == ["log_temperature", "pin_tower.0.bias", "pin_tower.0.weight", "pin_tower.2.bias",
                               "pin_tower.2.weight"] and not unexpected
    assert normalized.similarity == "cosine"
    torch.testing.assert_close(torch.nn.functional.normalize(out, dim=-1), normalized(tokens))
    # Gradients of a dot-product logit reach the item table from both ends (input and output).
    logit = (tied.embed_users(tokens) * tied.embed_pins(torch.tensor([5, 5, 5]))).sum()
    logit.backward()
    assert tied.item_embedding.weight.grad[5].abs().sum() > 0
    old = {k: v for k, v in tiny_config().to_dict().items() if k != "output"}
    assert PinnerFormerConfig.from_dict(old).output == "normalized"


def test_tied_dot_output_needs_an_id_table_as_wide_as_the_embedding():
    with pytest.raises(ValueError, match="output='tied_dot' .* needs id-only mode"):
        tiny_config(num_items=0, pin_dim=16, output="tied_dot")
    with pytest.raises(ValueError, match=r"item_dim \(8\) equal to embedding_dim \(16\)"):
        tiny_config(item_dim=8, output="tied_dot")
    with pytest.raises(ValueError, match="output must be one of"):
        tiny_config(output="bilinear")


def test_item_attributes_add_their_mean_embedding_to_the_item_vector_and_are_saved():
    model = _model(features=(), token_input="scaled", output="tied_dot", num_attributes=5, max_item_attributes=3)
    table = torch.full((40, 3), -1)
    table[3, :2] = torch.tensor([0, 4])
    table[7, :3] = torch.tensor([1, 2, 4])
    model.set_item_attributes(table)
    ids, attrs = model.item_embedding.weight, model.attribute_embedding.weight
    vectors = model.embed_pins(torch.tensor([3, 7, 9]))
    torch.testing.assert_close(vectors[0], ids[3] + (attrs[0] + attrs[4]) / 2)
    torch.testing.assert_close(vectors[1], ids[7] + attrs[[1, 2, 4]].mean(dim=0))
    torch.testing.assert_close(vectors[2], ids[9])  # no attributes: the id vector alone
    # Two items sharing an attribute share its gradient: the content reaches items through it.
    (model.embed_pins(torch.tensor([3])) * torch.ones(16)).sum().backward()
    assert attrs.grad[4].abs().sum() > 0 and attrs.grad[1].abs().sum() == 0
    # The table travels in the state_dict: a model rebuilt from the config alone scores the same.
    rebuilt = _model(**model.config.to_dict())
    rebuilt.load_state_dict(model.state_dict())
    tokens = _tokens()
    torch.testing.assert_close(rebuilt(tokens), model(tokens))
    torch.testing.assert_close(rebuilt.embed_pins(torch.arange(40)), model.embed_pins(torch.arange(40)))


def test_item_attributes_are_validated():
    with pytest.raises(ValueError, match="need id-only mode .* max_item_attributes > 0"):
        tiny_config(num_attributes=5)
    with pytest.raises(ValueError, match="need id-only mode"):
        tiny_config(num_items=0, pin_dim=16, num_attributes=5, max_item_attributes=2)
    with pytest.raises(ValueError, match="must be >= 0"):
        tiny_config(num_attributes=-1)
    model = _model(num_attributes=5, max_item_attributes=2)
    with pytest.raises(ValueError, match=r"must be \(40, 2\), got \(40, 3\)"):
        model.set_item_attributes(torch.zeros(40, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"must lie in \[0, 5\) or be -1"):
        model.set_item_attributes(torch.full((40, 2), 5))
    with pytest.raises(ValueError, match="has no item attributes"):
        _model().set_item_attributes(torch.zeros(40, 2, dtype=torch.int64))
    old = {k: v for k, v in tiny_config().to_dict().items() if k not in ("num_attributes", "max_item_attributes")}
    assert PinnerFormerConfig.from_dict(old).num_attributes == 0

import torch

from diffdrl.models.token_bank import TokenBank, TokenBankConfig


def test_token_bank_equals_separate_mlps():
    torch.manual_seed(0)
    bank = TokenBank(TokenBankConfig(hidden=(64, 128), activation="elu"), num_units=5, token_dim=16)
    units = torch.randn(7, 5)
    tokens = bank(units)
    assert tokens.shape == (7, 5, 16)
    for i in range(5):
        expected = bank.unit_mlp(i)(units[:, i : i + 1])
        torch.testing.assert_close(tokens[:, i], expected, rtol=1e-5, atol=1e-6)


def test_each_token_depends_on_its_own_unit_only():
    torch.manual_seed(0)
    bank = TokenBank(TokenBankConfig(), num_units=4, token_dim=8)
    units = torch.randn(3, 4)
    changed = units.clone()
    changed[:, 2] += 1.0
    diff = (bank(changed) - bank(units)).abs().sum(dim=(0, 2))
    assert diff[2] > 0 and torch.all(diff[[0, 1, 3]] == 0)


def test_units_get_independent_weights():
    torch.manual_seed(0)
    bank = TokenBank(TokenBankConfig(), num_units=3, token_dim=8)
    assert not torch.equal(bank.weights[0][0], bank.weights[0][1])
    # each unit is initialised as its own nn.Linear: uniform in +-1/sqrt(fan_in) per layer
    for w, b in zip(bank.weights, bank.biases, strict=True):
        bound = 1.0 / w.shape[1] ** 0.5
        assert w.abs().max() <= bound and b.abs().max() <= bound
    # a loss on token 1 trains unit 1's slice of every layer and nothing of units 0 and 2
    bank(torch.randn(5, 3))[:, 1].square().sum().backward()
    for p in [*bank.weights, *bank.biases]:
        assert p.grad[1].abs().sum() > 0
        assert torch.count_nonzero(p.grad[[0, 2]]) == 0
    # so after one optimiser step only unit 1's MLP has changed
    before = [bank.unit_mlp(i)(torch.ones(2, 1)) for i in range(3)]
    with torch.no_grad():
        for p in [*bank.weights, *bank.biases]:
            p -= 0.1 * p.grad
    after = [bank.unit_mlp(i)(torch.ones(2, 1)) for i in range(3)]
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert not torch.equal(before[1], after[1])

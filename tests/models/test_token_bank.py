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
    bank = TokenBank(TokenBankConfig(), num_units=3, token_dim=8)
    assert not torch.equal(bank.weights[0][0], bank.weights[0][1])

import numpy as np
import torch

from diffdrl.hspace.asymmetric import asymmetric_step, ddim_grid, edit_sample


class ToyUNet(torch.nn.Module):
    """eps = W2 tanh(W1 x + t) as a U-Net with a mid block and one up block (h = tanh(W1 x + t))."""

    class Mid(torch.nn.Module):
        def forward(self, z):
            return torch.tanh(z)

    class Up(torch.nn.Module):
        def __init__(self, w2):
            super().__init__()
            self.w2 = w2

        def forward(self, hidden_states, res_hidden_states_tuple=()):
            return torch.einsum("ij,bj...->bi...", self.w2, hidden_states) + res_hidden_states_tuple[0]

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = torch.randn(3, 3, generator=gen) / 3
        self.w2 = torch.randn(3, 3, generator=gen) / 3
        self.mid_block = self.Mid()
        self.up_blocks = torch.nn.ModuleList([self.Up(self.w2)])
        self.conv_norm_out = None
        self.conv_out = torch.nn.Identity()

    def forward(self, x, t):
        z = torch.einsum("ij,bj...->bi...", self.w1, x) + t.view(-1, 1, 1, 1) / 100
        h = self.mid_block(z)
        return self.up_blocks[0](hidden_states=h, res_hidden_states_tuple=(0.1 * x,))


def test_asymmetric_step_is_the_formula_on_a_toy_eps_model():
    from diffdrl.hspace.bottleneck import HSpace

    net = ToyUNet()
    betas = np.linspace(1e-3, 0.05, 100)
    abar = np.cumprod(1 - betas)
    x_T = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    dh = 0.3 * torch.ones(1, 3, 2, 2)
    steps, t_edit = 5, 40
    ours = edit_sample(HSpace(net), net, x_T, betas, dh, steps=steps, t_edit=t_edit)
    # by hand: eps_edit = W2 (h + dh) + 0.1 x into P_t only, the unedited eps into D_t
    x = x_T.clone()
    ts = np.round(np.arange(100, 0, -100 / steps)).astype(int) - 1
    for t in ts:
        # the last step lands on the clean image (alpha_bar = 1), as the library's DDIM does
        a, a_prev = abar[t], (abar[t - 100 // steps] if t - 100 // steps >= 0 else 1.0)
        z = torch.einsum("ij,bj...->bi...", net.w1, x) + t / 100
        h = torch.tanh(z)
        eps = torch.einsum("ij,bj...->bi...", net.w2, h) + 0.1 * x
        eps_edit = torch.einsum("ij,bj...->bi...", net.w2, h + dh) + 0.1 * x if t >= t_edit else eps
        p_t = (x - np.sqrt(1 - a) * eps_edit) / np.sqrt(a)
        x = np.sqrt(a_prev) * p_t + np.sqrt(1 - a_prev) * eps
    torch.testing.assert_close(ours, x.clamp(-1, 1), atol=1e-5, rtol=1e-5)
    assert list(ddim_grid(betas, steps)[0]) == list(ts)


def test_stochastic_step_adds_sigma_z():
    x, eps, z = torch.ones(1, 3), torch.zeros(1, 3), torch.ones(1, 3)
    a, a_prev = 0.5, 0.8
    var = (1 - a_prev) / (1 - a) * (1 - a / a_prev)
    expected = np.sqrt(a_prev) * x / np.sqrt(a) + np.sqrt(var) * z
    torch.testing.assert_close(asymmetric_step(x, eps, eps, a, a_prev, eta=1.0, noise=z), expected.float())

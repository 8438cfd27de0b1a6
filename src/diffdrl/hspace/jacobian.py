"""Jacobian ("pullback") directions of h-space (Park et al., NeurIPS 2023; Diffusion-Pullback).

For a fixed t, J = dh_t / dx_t maps image-space perturbations to bottleneck changes; its top
right-singular vectors are the x-space directions that move h_t most, and editing x_t along them
then sampling on edits the image. They come from a subspace power iteration on J^T J: jvp for J V,
vjp for J^T (J V), a QR per iteration, Rayleigh-Ritz at the end; rank k, until the subspace moves
less than ``tol``. Ours, and cheap: the same for J = dh_t / dc with c EncDiff's tokens (N d inputs,
small enough that ``token_jacobian_directions`` takes the full Jacobian and an exact SVD).

Both accept a batch of B points and return directions shared by the batch: the top eigenvectors of
M = sum_i J_i^T J_i (for B = 1, J's own right-singular vectors). ``f`` must treat rows
independently (our U-Nets do in eval mode): the k columns of V are pushed through as one batch of
k B rows, so no vmap is needed over diffusers' attention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jvp as _jvp
from torch.func import vjp
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm


def jvp(f: Callable, primals: tuple, tangents: tuple):
    """(f(x), J v). Forward mode (torch.func.jvp, attention on SDPA's math kernel: the fused kernels
    have no forward derivative in torch 2.13) where torch supports it; where it does not (group
    norm's forward derivative rejects the strided tangents of diffusers' AdaGN blocks) the same
    product by reverse over reverse: J v = d/du <J^T u, v>, exact as well, about twice the cost."""
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            return _jvp(f, primals, tangents)
    except (RuntimeError, NotImplementedError):
        (x,), (v,) = primals, tangents
        y, pull = vjp(f, x)
        _, pull_twice = vjp(lambda u: pull(u)[0], torch.zeros_like(y))
        return y, pull_twice(v)[0]


@dataclass
class Directions:
    """Top-k directions: ``inputs`` (k, *in) orthonormal, ``singular`` (k,) descending,
    ``outputs`` (k, *out) the unit-norm mean image of each direction under J (for projections)."""

    inputs: torch.Tensor
    singular: torch.Tensor
    outputs: torch.Tensor
    iterations: int = 0


def _gram_apply(f: Callable, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(J V (k, B, *out), sum_i J_i^T J_i V (k, *in)) for V (k, *in), in one jvp and one vjp."""
    k, b = len(v), len(x)
    x_rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:]).contiguous().clone()
    v_rep = v.unsqueeze(1).expand(k, b, *v.shape[1:]).reshape(k * b, *v.shape[1:]).clone()
    _, jv = jvp(f, (x_rep,), (v_rep,))
    _, pull = vjp(f, x_rep)
    (jtjv,) = pull(jv)
    return jv.detach().reshape(k, b, *jv.shape[1:]), jtjv.detach().reshape(k, b, *v.shape[1:]).sum(1)


def _orthonormal(z: torch.Tensor) -> torch.Tensor:
    q, _ = torch.linalg.qr(z.flatten(1).T.double())
    return q.T.to(z.dtype).reshape(z.shape)


def power_iteration(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    rank: int = 8,
    iters: int = 20,
    tol: float = 1e-4,
    seed: int = 0,
    progress: bool = False,
) -> Directions:
    """Top-``rank`` right-singular directions of J = df/dx at the batch x (B, *in) (module doc)."""
    n = x[0].numel()
    if not 1 <= rank <= n:
        raise ValueError(f"rank must be in [1, {n}] (the input dimension), got {rank}")
    if iters < 1 or not tol > 0:
        raise ValueError(f"need iters >= 1 and tol > 0, got {iters}, {tol}")
    gen = torch.Generator().manual_seed(seed)
    v = _orthonormal(torch.randn((rank, *x.shape[1:]), generator=gen).to(x))
    done = 0
    for _ in tqdm(range(iters), disable=not progress, desc="power iteration", leave=False):
        done += 1
        _, z = _gram_apply(f, x, v)
        new = _orthonormal(z)
        # subspace change: || (I - V V^T) V_new ||, 0 when the spans agree
        a, b = v.flatten(1).double(), new.flatten(1).double()
        moved = float(torch.linalg.matrix_norm(b - (b @ a.T) @ a, ord=2))
        v = new
        if moved < tol:
            break
    jv, z = _gram_apply(f, x, v)
    small = v.flatten(1).double() @ z.flatten(1).double().T  # (k, k) = V^T M V (Rayleigh-Ritz)
    eigval, eigvec = torch.linalg.eigh((small + small.T) / 2)
    eigval, eigvec = eigval.flip(0), eigvec.flip(1)
    inputs = (eigvec.T @ v.flatten(1).double()).to(x.dtype).reshape(v.shape)
    jv = torch.einsum("jk,kb...->jb...", eigvec.T.to(jv.dtype), jv)
    return Directions(inputs, eigval.clamp(min=0).sqrt().to(x.dtype), _mean_unit(jv), done)


def _mean_unit(jv: torch.Tensor) -> torch.Tensor:
    """Per direction, the unit-norm batch mean of J_i v (k, B, *out) -> (k, *out)."""
    mean = jv.mean(1)
    return mean / mean.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *([1] * (mean.ndim - 1)))


def full_jacobian_directions(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rank: int = 8, chunk: int = 64
) -> Directions:
    """Exact top-``rank`` eigenvectors of M = sum_i J_i^T J_i for small inputs (the tokens): every
    column of J from jvps of the unit vectors, ``chunk`` at a time, then one symmetric eigensolve."""
    shape, n = x.shape[1:], x[0].numel()
    if not 1 <= rank <= n:
        raise ValueError(f"rank must be in [1, {n}] (the input dimension), got {rank}")
    eye = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, *shape)
    cols = []
    for i in range(0, n, chunk):
        basis = eye[i : i + chunk]
        k, b = len(basis), len(x)
        x_rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *shape).clone()
        v_rep = basis.unsqueeze(1).expand(k, b, *shape).reshape(k * b, *shape).clone()
        _, jv = jvp(f, (x_rep,), (v_rep,))
        out_shape = jv.shape[1:]
        cols.append(jv.detach().reshape(k, b, -1))
    jac = torch.cat(cols).permute(1, 2, 0).double()  # (B, m, n)
    m = torch.einsum("bmi,bmj->ij", jac, jac)
    eigval, eigvec = torch.linalg.eigh(m)
    eigval, eigvec = eigval.flip(0)[:rank], eigvec.flip(1)[:, :rank]  # (n, k)
    jv = torch.einsum("bmn,nk->kbm", jac, eigvec)
    outputs = _mean_unit(jv).reshape(rank, *out_shape)
    return Directions(
        eigvec.T.to(x.dtype).reshape(rank, *shape), eigval.clamp(min=0).sqrt().to(x.dtype), outputs
    )

"""How to sample when nobody says: the one place the sampling defaults are written.

The models' ``generate``, the samplers, the pictures, the h-space edits, the explorer and the
command line all read these names; none writes a sampler name or a step count of its own. Where a
use deliberately differs from ``DEFAULT_SAMPLING`` it is one named constant here (or, for the
explorer's preview, one in ``explore``) that says why. Torch-free on purpose: the command line's
parser reads it, and ``diffdrl --help`` must not wait for torch (benchmarks/cli_latency.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# The update rules of ``diffusion.samplers.SAMPLERS`` (diffusers' schedulers), by name.
SAMPLER_NAMES = ("ddpm", "ddim", "dpm++", "unipc")
# Those deterministic given x_T (DDIM at eta 0): renders of the same units and x_T are identical,
# so they can be batched and cached (the explorer).
DETERMINISTIC_SAMPLERS = ("dpm++", "ddim", "unipc")


@dataclass(frozen=True)
class Sampling:
    """A sampler, its number of steps and DDIM's stochasticity eta."""

    sampler: str = "ddim"
    steps: int = 50
    eta: float = 0.0  # deterministic, so the rows of a grid differ by their units only

    def __post_init__(self):
        if self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"unknown sampler {self.sampler!r} (samplers: {', '.join(SAMPLER_NAMES)})")


DEFAULT_SAMPLING = Sampling()

# Reconstructions (and fresh-noise samples) sample with eta 1, as EncDiff does: what comes back is
# what the tokens alone carry, not what a deterministic path from x_T remembers.
RECONSTRUCTION_ETA = 1.0

# A diffusion picture's x_T: fresh N(0, I), or DDIM inversion of its image.
STARTS = ("noise", "inversion")

# The h-space edits (``hspace``) run Asyrp's asymmetric DDIM loop on their own grid: 40 steps, the
# length of the inversion and generation grids in Asyrp's experiments (Kwon et al., ICLR 2023),
# which the edit intervals and strengths of ``hspace`` were chosen on.
EDIT_STEPS = 40
# Edit strips (``viz.hspace``, ``diffdrl hspace`` and ``diffdrl edit``) cost one edit sampling per
# direction x strength x image, so they take half of EDIT_STEPS: a quick look, not a measurement.
STRIP_STEPS = 20

"""The tiny test configurations: overrides that make a model small enough for milliseconds per
step (``TINY``, on the ``tiny-cpu`` preset), a first stage of the papers' form at test size
(``TINY_STAGE``) and the tiny EncDiff on its latents (``TINY_LATENT``). The fixtures built on
them are in tests/conftest.py."""

TINY = [
    "data.resolution=16",
    "model.units=3",
    "model.token_dim=4",
    "model.encoder.width=8",
    "model.token_bank.hidden=[8]",
    "model.denoiser.channels=[8,16]",
    "model.denoiser.cross_attention=[false,true]",
    "model.denoiser.heads=2",
    "model.denoiser.norm_groups=4",
    "model.schedule.timesteps=50",
    "train.batch_size=4",
    "train.eval_batch_size=4",
    "train.warmup_steps=2",
    "train.log_every=1",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.device=cpu",
]

# a first stage of the papers' form (f = 4, 3 latent channels) at test size
TINY_STAGE = [
    "model.channels=[8,8,8]",
    "model.norm_groups=4",
    "model.layers_per_block=1",
    "model.mid_attention=false",
    "train.batch_size=4",
    "train.eval_batch_size=4",
    "train.warmup_steps=0",
    "train.log_every=1",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.device=cpu",
]

# an EncDiff small enough for milliseconds per step, on a first stage's 3x(R/4)x(R/4) latents
TINY_LATENT = [o for o in TINY if not o.startswith("data.")]  # the resolution is the first stage's

# Diff-AE and InfoDiffusion (``tiny-cpu-diffae``, ``tiny-cpu-infodiffusion``) at test size
TINY_CODE = [
    "data.resolution=16",
    "model.units=3",
    "model.encoder.channels=[8,16]",
    "model.encoder.attention=[false,true]",
    "model.encoder.heads=2",
    "model.encoder.norm_groups=4",
    *(o for o in TINY if o.startswith(("model.denoiser.", "model.schedule.", "train."))),
]
# the unconditional denoiser (DisDiff's pre-trained model) and DisDiff on it, at test size
_TRAIN = [o for o in TINY if o.startswith("train.")]
TINY_DDPM = [
    "data.resolution=16",
    "model.denoiser.channels=[8,16]",
    "model.denoiser.cross_attention=[false,true]",
    "model.denoiser.heads=2",
    "model.denoiser.norm_groups=4",
    "model.schedule.timesteps=50",
    *_TRAIN,
]
TINY_DISDIFF = ["data.resolution=16", "model.units=3", "model.chunk_dim=2", "model.encoder.width=8", *_TRAIN]

"""The explorer over every kind of model: DyGA's anchors on the sliders, EncDiff-V's vector units,
EncDec's one-pass decoder, AdaGN (no cross-attention; also Diff-AE and InfoDiffusion), each at the
tests' tiny size."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from diffdrl.explore.session import Explorer
from diffdrl.training.config import load_config
from diffdrl.training.runs import load_run
from diffdrl.training.trainer import train
from diffdrl.viz.interchange import interchange
from diffdrl.viz.traversal import traverse, unit_ranges
from helpers.tiny import TINY, TINY_CODE

QUICK = {"reference": 100, "factor_samples": 150}
DYGA = [
    "model.anchoring.enabled=true",
    "model.anchoring.refit_every=2",
    "model.anchoring.max_fit_tokens=64",
    "model.anchoring.em_iterations=5",
]
MODELS = {
    "dyga": ("tiny-cpu", [*TINY, *DYGA]),
    "encdiffv": ("tiny-cpu-encdiffv", TINY),
    "encdec": (
        "tiny-cpu-encdec",
        [o.replace("model.denoiser.", "model.decoder.") for o in TINY if "schedule" not in o],
    ),
    "adagn": ("tiny-cpu-adagn", TINY),
    "diffae": ("tiny-cpu-diffae", TINY_CODE),
    "infodiffusion": ("tiny-cpu-infodiffusion", TINY_CODE),
}


def open_model(name: str, root) -> Explorer:
    preset, small = MODELS[name]
    train(load_config(preset, [*small, "train.steps=4"]), root / name, progress=False)
    return Explorer(load_run(root / name), cache_dir=root / f"{name}-cache", **QUICK)


def png(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def test_dyga_anchors_sit_where_the_units_token_meets_the_component_mean(tmp_path):
    ex = open_model("dyga", tmp_path)
    try:
        anchors = ex.model.anchors
        assert anchors._is_fitted
        units = ex.info()["units"]
        assert all(u["anchors"] for u in units)  # every unit shows its active components
        means = anchors.raw_means()  # (N, C, d)
        for i, unit in enumerate(units):
            assert len(unit["anchors"]) == int(anchors.active[i].sum())
            for a in unit["anchors"]:
                step = 0.05 * (unit["high"] - unit["low"])
                probe = torch.full((3, ex.num_units), a["value"])
                probe[1:, i] = torch.tensor([a["value"] - step, a["value"] + step])
                tokens = ex.model.raw_tokens(probe)[:, i]  # (3, d): at the anchor and either side
                dist = torch.cdist(tokens, means[i]).min(1).values
                assert dist[0] <= dist[1:].min() + 1e-4  # the nearest point of the curve (grid search)
                assert 0 <= a["weight"] <= 1
    finally:
        ex.close()


@pytest.mark.parametrize("name", ["encdiffv", "encdec", "adagn", "diffae", "infodiffusion"])
def test_every_model_renders_swaps_and_traverses_as_the_library(name, tmp_path):
    ex = open_model(name, tmp_path)
    try:
        a, b = ex.random_image(1), ex.random_image(2)
        # the explorer's default start for diffusion models: each image's DDIM inversion
        diffusion = {"sampler": "ddim", "steps": 3, "start": "inversion"} if ex.diffusion else {}
        steps, start = diffusion.get("steps"), diffusion.get("start")
        own = ex.render(a.id, [float(v) for v in a.values], seed=4, **diffusion)
        assert own == ex.render(a.id, None, seed=4, **diffusion)  # own slider values = own units
        grid = interchange(ex.model, a.pixels[None], b.pixels[None], steps=steps, seed=4, start=start)
        for unit in range(ex.num_units):
            got = png(ex.swap(a.id, b.id, unit, seed=4, **diffusion))
            assert np.abs(got.astype(int) - grid.swapped[unit, 0]).max() <= 1
        strip = ex.strip(a.id, 0, 3, seed=4, **diffusion)
        rows = traverse(
            ex.model,
            a.pixels,
            unit_ranges(ex.reference_units, 3, num_units=ex.num_units),
            steps=steps,
            seed=4,
            start=start,
        )
        for got, want in zip(strip["pngs"], rows[0], strict=True):
            assert np.abs(png(base64.b64decode(got.split(",")[1])).astype(int) - want).max() <= 1
        if name in ("adagn", "diffae", "infodiffusion"):  # AdaGN conditioning: no cross-attention
            assert "no per-token attention" in ex.info()["attention_reason"]
            with pytest.raises(ValueError, match="cross-attention"):
                ex.attention(a.id)
        else:
            assert len(ex.attention(a.id)) == ex.num_units
        if name == "encdiffv":  # a vector unit's slider moves its token along the first principal axis
            moved = ex.with_values(a.units, torch.tensor(a.values) + 1.0).view(ex.num_units, -1)
            shift = moved - a.units.view(ex.num_units, -1)
            assert torch.allclose(shift, ex.axis, atol=1e-5)
    finally:
        ex.close()

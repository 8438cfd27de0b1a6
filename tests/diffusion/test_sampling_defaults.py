"""The sampling defaults are written once (``diffusion.sampling``): the samplers, the models, the
pictures, the explorer, the h-space edits and the command line read them from there, and no other
signature or option writes a sampler, a step count or an eta of its own."""

import ast
import inspect
from pathlib import Path

import pytest

from diffdrl.cli import build_parser
from diffdrl.diffusion import sampling
from diffdrl.diffusion.sampling import (
    DEFAULT_SAMPLING,
    DETERMINISTIC_SAMPLERS,
    EDIT_STEPS,
    SAMPLER_NAMES,
    STARTS,
    STRIP_STEPS,
    Sampling,
)

SRC = Path(__file__).resolve().parents[2] / "src" / "diffdrl"
# parameters named like sampling options that are something else, with why
NOT_SAMPLING = {
    ("hspace/classifier.py", "train_classifier", "steps"),  # optimiser steps of the classifier
    ("hspace/learned.py", "classifier_for", "steps"),  # the same, passed through
    ("hspace/asymmetric.py", "asymmetric_step", "eta"),  # eta of one DDIM step: 0 is the formula's DDIM
}


def literal_sampling_defaults() -> list[tuple[str, str, str, object]]:
    """(file, function, parameter, value) of every literal default of a ``steps``, ``sampler`` or
    ``eta`` parameter, and of every ``--steps``/``--sampler``/``--eta`` option, in the package."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        name = str(path.relative_to(SRC))
        if name == "diffusion/sampling.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                positional = a.posonlyargs + a.args
                defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
                for arg, default in [
                    *zip(positional, defaults, strict=True),
                    *zip(a.kwonlyargs, a.kw_defaults, strict=True),
                ]:
                    if arg.arg in ("steps", "sampler", "eta") and isinstance(default, ast.Constant):
                        if default.value is not None and (name, node.name, arg.arg) not in NOT_SAMPLING:
                            found.append((name, node.name, arg.arg, default.value))
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                options = [x.value for x in node.args if isinstance(x, ast.Constant)]
                if set(options) & {"--steps", "--sampler", "--eta"}:
                    for keyword in node.keywords:
                        if keyword.arg == "default" and isinstance(keyword.value, ast.Constant):
                            if keyword.value.value is not None:
                                found.append((name, "add_argument", options[0], keyword.value.value))
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Sampling":
                if name != "explore/session.py":  # the explorer's preview, checked below
                    found.append((name, "Sampling(...)", "", ast.unparse(node)))
    return found


def test_no_module_writes_a_sampling_default_of_its_own():
    assert literal_sampling_defaults() == []


def test_the_samplers_and_the_models_read_the_one_place():
    from diffdrl.diffusion.samplers import SAMPLERS, ddim_invert, sample
    from diffdrl.models.encdiff import EncDiff

    assert tuple(SAMPLERS) == SAMPLER_NAMES
    for name, value in (("sampler", DEFAULT_SAMPLING.sampler), ("steps", DEFAULT_SAMPLING.steps)):
        assert inspect.signature(sample).parameters[name].default == value
        assert inspect.signature(EncDiff.generate).parameters[name].default == value
    assert inspect.signature(ddim_invert).parameters["steps"].default == DEFAULT_SAMPLING.steps


def test_the_explorer_differs_by_one_named_preview_constant(monkeypatch):
    from diffdrl.explore import session

    assert isinstance(session.PREVIEW_SAMPLING, Sampling)
    assert session.SAMPLERS == DETERMINISTIC_SAMPLERS and "ddpm" not in session.SAMPLERS
    assert set(DETERMINISTIC_SAMPLERS) <= set(SAMPLER_NAMES)
    # Explorer.sampling resolves through the pictures' resolve_sampling with those defaults
    explorer = object.__new__(session.Explorer)
    explorer.model = type("Diffusion", (), {"generate": lambda self: None})()
    preview = (session.PREVIEW_SAMPLING.sampler, session.PREVIEW_SAMPLING.steps, session.PREVIEW_START)
    assert explorer.sampling(None, None) == preview
    assert explorer.sampling("ddim", 7, "noise") == ("ddim", 7, "noise")
    assert session.PREVIEW_START in STARTS


def test_the_hspace_edits_default_to_edit_steps_and_the_strips_to_strip_steps():
    from diffdrl.hspace import asymmetric, delta, directions, guidance, interval, learned, subspace
    from diffdrl.viz import factor_edit, hspace

    edit_functions = [
        f
        for module in (asymmetric, delta, directions, guidance, interval, subspace)
        for _, f in inspect.getmembers(module, inspect.isfunction)
        if f.__module__ == module.__name__ and "steps" in inspect.signature(f).parameters
    ]
    assert len(edit_functions) >= 15
    for f in edit_functions:
        default = inspect.signature(f).parameters["steps"].default
        assert default in (EDIT_STEPS, inspect.Parameter.empty), f.__qualname__
    for f in (hspace.hspace_strips, hspace.save_hspace, factor_edit.edit_factor, learned.delta_for):
        assert inspect.signature(f).parameters["steps"].default == STRIP_STEPS, f.__qualname__


@pytest.mark.parametrize(
    ("argv", "steps"),
    [
        (["hspace", "RUN"], STRIP_STEPS),
        (["edit", "RUN", "--factor", "shape"], STRIP_STEPS),
        (["sample", "RUN"], None),  # None: the pictures' DEFAULT_SAMPLING, resolved in the library
        (["swap", "RUN"], None),
    ],
)
def test_the_command_line_reads_the_one_place(argv, steps, tmp_path):
    (tmp_path / "config.yaml").write_text("{}\n")
    args = build_parser().parse_args([a.replace("RUN", str(tmp_path)) for a in argv])
    assert args.steps == steps
    assert getattr(args, "sampler", None) in (None, *SAMPLER_NAMES)


def test_sampling_refuses_an_unknown_sampler():
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        Sampling("euler")
    assert sampling.STRIP_STEPS < sampling.EDIT_STEPS

import pytest

from diffdrl.training.config import (
    Config,
    ConfigError,
    apply_overrides,
    dump_config,
    from_dict,
    load_config,
    preset_mapping,
    preset_names,
    read_yaml,
)


def test_presets_load_and_round_trip(tmp_path):
    assert {"tiny-cpu", "paper"} <= set(preset_names())
    for name in preset_names():
        config = load_config(name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(dump_config(config))
        assert from_dict(Config, read_yaml(path)) == config


def test_overrides_are_typed():
    config = load_config(
        "tiny-cpu",
        [
            "train.steps=7",
            "train.lr=1e-3",
            "model.denoiser.channels=[16,32]",
            "model.denoiser.cross_attention=[false,true]",
            "data.path=/x",
        ],
    )
    assert config.train.steps == 7 and config.train.lr == 1e-3
    assert config.model.denoiser.channels == (16, 32)
    assert config.data.path == "/x"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.stepz=3", "unknown config key train.stepz"),
        ("trian.steps=3", "unknown config key trian"),
        ("train.steps=abc", "train.steps: expected an integer"),
        ("train.steps=1.5", "train.steps: expected an integer"),
        ("train.steps=0", "train.steps must be >= 1"),
        ("train.channels_last=1", "train.channels_last: expected true/false"),
        ("model.schedule.name=quadratic", "model.schedule.name must be one of"),
        ("model.denoiser.heads=3", "model.denoiser.heads=3 must divide"),
        ("model.loss=l3", "model.loss must be one of"),
        ("train.mixed_precision=fp8", "train.mixed_precision must be one of"),
        ("model.denoiser.cross_attention=[true]", "one flag per level"),
        ("train=5", "train: expected a mapping"),
        ("novalue", "not of the form key.sub=value"),
    ],
)
def test_invalid_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config("tiny-cpu", [override])


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ConfigError, match="presets: .*tiny-cpu"):
        load_config("tiny-gpu")


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_overrides_do_not_mutate_the_preset():
    base = {"train": {"steps": 1}}
    apply_overrides(base, ["train.steps=2"])
    assert base == {"train": {"steps": 1}}


def test_variant_presets_inherit_from_their_base():
    base, dyga = load_config("tiny-cpu"), load_config("tiny-cpu-dyga")
    assert dyga.model.anchoring.enabled and not base.model.anchoring.enabled
    assert dyga.model.denoiser.skip_dropout.rate == 0.2
    assert dyga.model.denoiser.channels == base.model.denoiser.channels  # inherited
    assert dyga.train == base.train
    assert load_config("paper-dyga").model.token_dim == 32


def test_user_yaml_can_name_a_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: tiny-cpu\ntrain:\n  steps: 5\n")
    config = load_config(str(path))
    assert config.train.steps == 5 and config.data.resolution == 32
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop}\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(loop))


def test_model_section_is_chosen_by_its_name(tmp_path):
    from diffdrl.models.encdiff import EncDiffConfig

    assert isinstance(load_config("tiny-cpu").model, EncDiffConfig)
    with pytest.raises(ConfigError, match="model.name must be one of .*'encdiff'.*got 'nope'"):
        load_config("tiny-cpu", ["model.name=nope"])
    # a variant naming another model replaces its base's model section instead of merging into it
    variant = tmp_path / "variant.yaml"
    variant.write_text("base: tiny-cpu\nmodel:\n  name: other\n  units: 3\n")
    assert preset_mapping(str(variant))["model"] == {"name": "other", "units": 3}
    same = tmp_path / "same.yaml"
    same.write_text("base: tiny-cpu\nmodel:\n  units: 3\n")
    assert preset_mapping(str(same))["model"]["token_dim"] == 16  # merged

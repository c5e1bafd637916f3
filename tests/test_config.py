"""The config loader: defaults, YAML inheritance, overrides, errors that name the key, saving."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

from vireid.config import config_keys, config_to_yaml, load_config, save_config
from vireid.config.defaults import VireidConfig
from vireid.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_dataclasses() -> None:
    cfg = load_config()
    ref = VireidConfig()
    assert cfg.train.epochs == ref.train.epochs
    assert cfg.data.height == ref.data.height
    assert list(cfg.optim.milestones) == ref.optim.milestones
    assert cfg.output_dir == ref.output_dir
    assert OmegaConf.is_struct(cfg)
    with pytest.raises(ConfigAttributeError):  # struct mode: a new key cannot be added by assignment
        cfg.train.not_a_key = 1


def test_config_keys_lists_every_leaf() -> None:
    keys = config_keys()
    expected = []
    defaults = VireidConfig()
    for field in dataclasses.fields(defaults):
        value = getattr(defaults, field.name)
        if dataclasses.is_dataclass(value):
            expected += [f"{field.name}.{f.name}" for f in dataclasses.fields(value)]
        else:
            expected.append(field.name)
    assert keys == expected
    assert "train.epochs" in keys and "model.mca_after" in keys
    assert "data" not in keys  # sections are not leaves


def test_two_level_inheritance_and_relative_bases(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "train:\n  epochs: 50\n  seed: 3\ndata:\n  name: regdb\n")
    write(
        tmp_path / "method" / "mid.yaml", "_base_: ../base.yaml\ntrain:\n  epochs: 40\nmodel:\n  name: dam\n"
    )
    leaf = write(tmp_path / "method" / "exp" / "leaf.yaml", "_base_: ../mid.yaml\ntrain:\n  seed: 7\n")
    cfg = load_config(leaf)
    assert cfg.train.epochs == 40  # mid overrides base
    assert cfg.train.seed == 7  # leaf overrides base
    assert cfg.data.name == "regdb"  # from base, untouched by the others
    assert cfg.model.name == "dam"  # from mid
    assert cfg.optim.lr == VireidConfig().optim.lr  # default


def test_list_of_bases_merged_in_order_and_absolute_path(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "train:\n  epochs: 1\n  seed: 1\n")
    write(tmp_path / "b.yaml", "train:\n  epochs: 2\n")
    top = write(tmp_path / "sub" / "top.yaml", f"_base_: [{a}, ../b.yaml]\n")
    cfg = load_config(top)
    assert cfg.train.epochs == 2  # the later base wins
    assert cfg.train.seed == 1


def test_override_precedence_and_yaml_values(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "train:\n  epochs: 50\n")
    top = write(tmp_path / "top.yaml", "_base_: base.yaml\ntrain:\n  epochs: 40\n")
    cfg = load_config(
        top, ["train.epochs=5", "model.mca_after=[3]", "optim.lr=1e-3", "train.epochs=6", "data.flip=false"]
    )
    assert cfg.train.epochs == 6  # overrides beat files; the last override wins
    assert list(cfg.model.mca_after) == [3]
    assert cfg.optim.lr == pytest.approx(0.001)
    assert cfg.data.flip is False
    # a value containing '=' keeps everything after the first '='
    assert load_config(None, ["output_dir=runs/a=b"]).output_dir == "runs/a=b"


def test_unknown_key_in_yaml_names_file_and_suggests(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "train:\n  epoch: 3\n")
    top = write(tmp_path / "top.yaml", "_base_: base.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(top)
    msg = str(info.value)
    assert "'train.epoch'" in msg
    assert str((tmp_path / "base.yaml").resolve()) in msg  # the file the key came from, not top.yaml
    assert "Did you mean 'train.epochs'?" in msg


def test_unknown_override_suggests_nearest_key() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown config key 'optim.weight_decy'\. Did you mean 'optim.weight_decay'\?"
    ):
        load_config(None, ["optim.weight_decy=0.1"])
    with pytest.raises(ConfigError, match=r"Did you mean 'train.epochs'\?"):
        load_config(None, ["epochs=3"])
    with pytest.raises(ConfigError, match="unknown config key 'zzzz'") as info:
        load_config(None, ["zzzz=1"])
    assert "Did you mean" not in str(info.value)


def test_wrong_type_names_key_value_and_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.epochs=abc"])
    msg = str(info.value)
    assert "'train.epochs'" in msg and "'abc'" in msg and "expected int" in msg
    with pytest.raises(ConfigError, match=r"'data.flip'.*'maybe'.*expected bool"):
        load_config(None, ["data.flip=maybe"])
    with pytest.raises(ConfigError, match=r"'model.mca_after\[0\]'.*'x'.*expected int"):
        load_config(None, ["model.mca_after=[x]"])
    bad = write(tmp_path / "bad.yaml", "optim:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'optim.lr'.*'fast'.*expected float"):
        load_config(bad)
    section = write(tmp_path / "section.yaml", "train: 3\n")
    with pytest.raises(ConfigError, match=r"'train' is a section"):
        load_config(section)


def test_a_bad_value_among_many_layers_is_named_with_its_file_or_override(tmp_path: Path) -> None:
    """The loader merges every file and override in one step, and again one at a time only to name the source
    of a bad value; a value that a later layer replaces never reaches the run and is not an error."""
    write(tmp_path / "base.yaml", "optim:\n  lr: fast\n")
    top = write(tmp_path / "top.yaml", "_base_: base.yaml\ntrain:\n  epochs: 4\n")
    with pytest.raises(ConfigError, match=r"base\.yaml: config key 'optim.lr' has the value 'fast'; expected float"):
        load_config(top, ["train.seed=1", "train.epochs=2"])
    assert load_config(top, ["train.seed=1", "optim.lr=0.01"]).optim.lr == pytest.approx(0.01)
    with pytest.raises(ConfigError, match=r"override 'train.epochs=abc': config key 'train.epochs' .*expected int"):
        load_config(None, ["train.seed=1", "train.epochs=abc", "data.flip=false"])


def test_merging_the_layers_at_once_equals_merging_them_one_by_one() -> None:
    from vireid.config.loader import _layers, _merge_layers

    overrides = ["train.epochs=3", "model.mca_after=[3]", "optim.lr=1e-3", "train.epochs=4", "data.flip=false"]
    configs = sorted(p for p in Path("configs").rglob("*.yaml") if "_base_" not in p.parts)
    assert len(configs) > 40
    for path in configs:
        layers = _layers(path, overrides)
        at_once, one_by_one = _merge_layers(layers, at_once=True), _merge_layers(layers, at_once=False)
        assert config_to_yaml(at_once) == config_to_yaml(one_by_one), path
        assert OmegaConf.is_struct(at_once) and OmegaConf.get_type(at_once) is VireidConfig


def test_malformed_override_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="no key"):
        load_config(None, ["=3"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    top = write(tmp_path / "top.yaml", "_base_: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(top)
    lst = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)
    broken = write(tmp_path / "broken.yaml", "train: {epochs: 3\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(broken)


def test_base_cycle_is_detected(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: c.yaml\n")
    c = write(tmp_path / "c.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle") as info:
        load_config(c)
    msg = str(info.value)
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        assert name in msg
    selfref = write(tmp_path / "self.yaml", "_base_: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(selfref)


def test_diamond_inheritance_is_not_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "root.yaml", "train:\n  seed: 9\n")
    write(tmp_path / "l.yaml", "_base_: root.yaml\ntrain:\n  epochs: 4\n")
    write(tmp_path / "r.yaml", "_base_: root.yaml\n")
    top = write(tmp_path / "top.yaml", "_base_: [l.yaml, r.yaml]\n")
    cfg = load_config(top)
    assert cfg.train.seed == 9 and cfg.train.epochs == 4


def test_save_then_load_round_trip(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "output_dir: runs/${data.name}\ndata:\n  name: llcm\n")
    cfg = load_config(tmp_path / "base.yaml", ["model.mca_after=[2,3]", "optim.lr=0.02", "loss.metric=none"])
    assert cfg.output_dir == "runs/llcm"  # interpolations are resolved
    out = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]  # no temporary file left
    again = load_config(out)
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg)
    assert config_to_yaml(again) == config_to_yaml(cfg) == out.read_text(encoding="utf-8")


def test_save_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("old", encoding="utf-8")
    save_config(load_config(None, ["train.epochs=3"]), path)
    assert load_config(path).train.epochs == 3


@pytest.mark.parametrize("override, message", [
    ("test.mode=outdoor", "test.mode='outdoor' is not valid; expected one of: all, indoor"),
    ("test.sampler=weird", "test.sampler='weird' is not valid; expected one of: community, official"),
    ("test.shots=3", "test.shots=3 is not valid; expected one of: 1, 10"),
    ("test.direction=up", "expected one of: visible_to_infrared, infrared_to_visible"),
    ("data.resize=cubic", "data.resize='cubic' is not valid; expected one of: lanczos, bilinear"),
    ("train.best_metric=R1", "expected one of: mAP, rank1"),
])
def test_enumerated_values_are_checked_when_loaded(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_every_choice_table_key_exists_and_its_default_is_valid() -> None:
    from vireid.config.checks import CHOICES

    cfg = load_config(None)
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        assert cfg[section][name] in choices, key


def test_unknown_dataset_name_is_a_config_error_naming_the_key() -> None:
    from vireid.data import build_dataset

    with pytest.raises(ConfigError, match="data.name: unknown dataset 'sysuu'.*Did you mean 'sysu'"):
        build_dataset("sysuu", "anywhere")


def test_switches_accept_yaml_booleans(tmp_path: Path) -> None:
    """train.channels_last=false (a YAML boolean on the command line or in a file) means the "false" switch;
    train.compile is a plain boolean."""
    cfg = load_config(None, ["train.channels_last=false", "train.compile=true"])
    assert cfg.train.channels_last == "false" and cfg.train.compile is True
    (tmp_path / "c.yaml").write_text("train:\n  channels_last: true\n")
    assert load_config(tmp_path / "c.yaml").train.channels_last == "true"
    with pytest.raises(ConfigError, match="train.channels_last='sometimes' is not valid"):
        load_config(None, ["train.channels_last=sometimes"])


@pytest.mark.parametrize("override, message", [
    ("train.epochs=-1", "train.epochs=-1 is out of range; expected epochs >= 0"),            # below the range
    ("data.random_erasing=1.5", "data.random_erasing=1.5 is out of range; expected a probability in [0, 1]"),  # above
    ("data.height=8", "data.height=8 is out of range; expected an image height in pixels >= 16"),
    ("optim.lr=0", "optim.lr=0.0 is out of range; expected a learning rate > 0"),            # an open bound
    ("optim.lr=.nan", "optim.lr=nan is out of range"),                                        # NaN is never in range
    ("model.mca_after=[3,5]", "model.mca_after=[3, 5] is out of range; expected ResNet stages 1..4"),  # a list element
    ("optim.milestones=[50,20]", "optim.milestones=[50, 20] is out of range; expected epochs >= 1, ascending"),
    ("model.csa_kernel=4", "model.csa_kernel=4 is out of range; expected an odd kernel size >= 1"),   # a rule
    ("test.batch_size=0", "test.batch_size=0 is out of range; expected a batch size >= 1"),
])
def test_numeric_values_are_checked_against_their_range_when_loaded(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config("configs/sysu/dam_tiny.yaml", [override])
    assert str(exc.value).startswith(message), str(exc.value)


def test_every_range_key_exists_and_every_shipped_config_is_in_range() -> None:
    from vireid.config.checks import RANGES

    assert set(RANGES) <= set(config_keys())
    for path in sorted(Path("configs").rglob("*.yaml")):
        if path.parent.name != "_base_":
            load_config(path)  # the defaults and every shipped config pass the checks


def test_the_trainers_settings_take_their_defaults_from_the_defaults_file():
    """One definition of each default: settings built by hand default to what a loaded config holds, and
    from_config of the default config equals the hand-built settings."""
    from vireid.engine.settings import OptimSettings, TrainSettings

    cfg = load_config(None)
    assert OptimSettings.from_config(cfg) == OptimSettings()
    by_hand = TrainSettings(output_dir=cfg.output_dir, epochs=cfg.train.epochs)
    from_cfg = TrainSettings.from_config(cfg)
    assert dataclasses.replace(from_cfg, config_yaml="") == by_hand

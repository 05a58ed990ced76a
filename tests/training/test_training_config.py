"""The training config: one error message naming every bad key path, --set overrides, resolved paths."""

from pathlib import Path

import pytest

from training.config import ConfigError, apply_overrides, load_config, validate_raw
from training_helpers import image_config, write_config


@pytest.fixture
def raw(tmp_path) -> dict:
    return image_config(tmp_path / "data", tmp_path)


def error_of(raw: dict, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(raw=raw, **kwargs)
    return info.value


def test_a_valid_config_loads_with_defaults(raw):
    config = load_config(raw=raw)
    assert config.valid_period == 1 and config.metric_for_checkpointing == "OVERALL/cmc/1"
    assert config.monitor_mode == "max"


def test_an_unknown_key_is_named_with_the_keys_allowed_there(raw):
    raw["max_epoch"] = 3
    raw["metric_args"]["cmc_topk"] = [1]
    error = error_of(raw)
    paths = [path for path, _ in error.problems]
    assert "max_epoch" in paths and "metric_args.cmc_topk" in paths
    message = str(error)
    assert "max_epoch: unknown key; allowed here:" in message and "max_epochs" in message
    assert "metric_args.cmc_topk: unknown key" in message and "cmc_top_k" in message


def test_a_wrong_type_names_the_key_and_the_value(raw):
    raw["max_epochs"] = "two"
    raw["devices"] = 0
    message = str(error_of(raw))
    assert "max_epochs: Input should be a valid integer" in message and "'two'" in message
    assert "devices: must be a number of devices >= 1 or 'auto'" in message


def test_an_unknown_loss_name_lists_the_allowed_criterions(raw):
    raw["criterion"] = {"name": "tripplet", "args": {"margin": 0.1}}
    error = error_of(raw)
    assert error.problems == [("criterion.name", error.problems[0][1])]
    assert "unknown criterion 'tripplet'" in str(error)
    for name in ("triplet", "triplet_with_miner", "arcface", "arcface_with_mlp", "surrogate_precision"):
        assert name in str(error)


def test_every_bad_registry_name_is_reported_in_one_message(raw):
    raw["criterion"]["args"]["miner"] = {"name": "hardest", "args": {}}
    raw["sampler"]["name"] = "balanced"
    raw["optimizer"] = {"name": "adamm", "args": {"lr": 0.1}}
    raw["scheduling"] = {"scheduler": {"name": "cosine", "args": {}}}
    raw["max_epochs"] = -1
    error = error_of(raw)
    paths = {path for path, _ in error.problems}
    assert {"criterion.args.miner.name", "sampler.name", "optimizer.name", "scheduling.scheduler.name",
            "max_epochs"} <= paths
    message = str(error)
    assert message.count("\n") == len(error.problems) and f"has {len(error.problems)} error(s)" in message
    assert "hard_triplets" in message and "category_balance" in message and "adamw" in message
    assert "cosine_annealing_warm_restarts" in message


def test_unknown_and_missing_arguments_of_a_registry_object_are_named(raw):
    raw["criterion"] = {"name": "triplet_with_miner", "args": {"margn": 0.2}}
    raw["sampler"]["args"] = {"n_labels": 4}
    problems = dict(validate_raw(raw))
    assert "takes no argument 'margn'; allowed: margin, miner, need_logs, reduction" in problems["criterion.args.margn"]
    assert "needs argument 'margin'" in problems["criterion.args.margin"]
    assert "needs argument 'n_instances'" in problems["sampler.args.n_instances"]


def test_runtime_arguments_are_not_required_in_the_config(raw):
    raw["criterion"] = {"name": "arcface", "args": {"m": 0.3, "s": 30}}  # in_features, num_classes: from the data
    raw["sampler"] = {"name": "category_balance", "args": {"n_categories": 2, "n_labels": 2, "n_instances": 2}}
    assert validate_raw(raw) == []


def test_augmentations_are_refused_as_the_validation_transform(raw):
    raw["transforms_val"] = {"name": "augs_torch", "args": {"im_size": 32}}
    message = str(error_of(raw))
    assert "transforms_val.name: unknown validation transform 'augs_torch'; allowed: norm_resize_torch, pretrained" \
        in message


def test_a_checkpointing_metric_that_is_not_computed_lists_those_that_are(raw):
    raw["metric_for_checkpointing"] = "OVERALL/cmc/10"
    message = str(error_of(raw))
    assert "metric_for_checkpointing: 'OVERALL/cmc/10' is not computed" in message
    assert "OVERALL/cmc/1, OVERALL/map/5" in message


def test_a_sampler_or_bs_train_is_required_but_not_both(raw):
    del raw["sampler"]
    assert "sampler: give a sampler" in str(error_of(raw))
    raw["sampler"] = {"name": "balance", "args": {"n_labels": 2, "n_instances": 2}}
    raw["bs_train"] = 8
    assert "bs_train: a sampler makes the batches" in str(error_of(raw))


def test_set_overrides_apply_before_validation_with_yaml_values(raw, tmp_path):
    path = write_config(raw, tmp_path / "c.yaml")
    config = load_config(path, overrides=["max_epochs=5", "optimizer.args.lr=1e-4", "metric_args.cmc_top_k=[1, 3]",
                                          "criterion.args.miner.args.norm_required=true", "limit_train_batches=0.5"])
    assert config.max_epochs == 5 and config.optimizer.args["lr"] == 1e-4
    assert config.metric_args.cmc_top_k == [1, 3] and config.limit_train_batches == 0.5
    assert config.criterion.args["miner"]["args"] == {"norm_required": True}


def test_a_bad_override_is_a_config_error_naming_the_key(raw, tmp_path):
    path = write_config(raw, tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        load_config(path, overrides=["max_epochs"])
    with pytest.raises(ConfigError, match="max_epochs.x: cannot set inside max_epochs"):
        load_config(path, overrides=["max_epochs.x=1"])
    with pytest.raises(ConfigError, match="max_epochs: Input should be a valid integer"):
        load_config(path, overrides=["max_epochs=many"])


def test_apply_overrides_creates_missing_mappings_and_leaves_the_input_alone():
    raw = {"a": {"b": 1}}
    assert apply_overrides(raw, ["a.c.d=x", "e=null"]) == {"a": {"b": 1, "c": {"d": "x"}}, "e": None}
    assert raw == {"a": {"b": 1}}


def test_command_line_name_and_models_dir_win_over_the_file(raw):
    config = load_config(raw=raw, name="other", models_dir="elsewhere")
    assert config.name == "other" and config.models_dir == str(Path.cwd() / "elsewhere")


def test_relative_paths_resolve_against_the_working_directory(raw, tmp_path):
    raw.update(dataset_root="../data/x", logs_root="logs", models_dir="./models")
    config = load_config(raw=raw, cwd=tmp_path / "work")
    assert config.dataset_root == str(tmp_path / "data" / "x")
    assert config.logs_root == str(tmp_path / "work" / "logs")
    assert config.models_dir == str(tmp_path / "work" / "models")


def test_a_bad_yaml_file_and_a_missing_file_are_config_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", ["training/configs/omniglot.yaml", "training/configs/debian.yaml"])
def test_the_shipped_configs_are_valid(path):
    from training_helpers import REPO_ROOT

    config = load_config(REPO_ROOT / path, cwd=REPO_ROOT)
    assert config.dataset_root.startswith(str(REPO_ROOT.parent / "shared" / "data"))

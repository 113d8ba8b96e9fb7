"""Config loading: YAML onto the schema, overrides, and one-line errors naming the key, the same
whether a value comes from YAML, `--set` or Python."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmeta.config import ExperimentConfig, PolicyConfig, with_changes
from rlmeta.config_io import (
    ConfigError,
    all_keys,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
    save_config,
)

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_yaml_maps_onto_the_schema_and_keeps_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "algorithm: maml\niterations: 7\nmaml:\n  inner_lr: 0.05\n  max_kl: 1e-3\n"
        "policy:\n  hidden_sizes: [64, 64]\nenv_kwargs: {arms: 5}\n",
    )
    config = load_config(path)
    assert config.iterations == 7
    assert config.maml.inner_lr == 0.05
    # PyYAML reads 1e-3 as a string; a float field takes the number it means.
    assert config.maml.max_kl == pytest.approx(1e-3)
    assert config.policy.hidden_sizes == [64, 64]
    assert config.env_kwargs == {"arms": 5}
    assert config.maml.episodes_per_task == ExperimentConfig().maml.episodes_per_task


def test_int_widens_to_float_but_bool_is_not_an_int() -> None:
    assert config_from_dict({"maml": {"inner_lr": 1}}).maml.inner_lr == 1.0
    assert isinstance(config_from_dict({"maml": {"inner_lr": 1}}).maml.inner_lr, float)
    with pytest.raises(ConfigError, match=r"'iterations' must be an integer, got True"):
        config_from_dict({"iterations": True})


def test_overrides_set_dotted_keys_parsed_as_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "iterations: 3\n")
    config = load_config(
        path,
        [
            "maml.inner_lr=0.05",
            "policy.hidden_sizes=[8, 8]",
            "env_kwargs.arms=10",
            "address=null",
            "mode=async",
            "iterations=15",
        ],
    )
    assert config.maml.inner_lr == 0.05
    assert config.policy.hidden_sizes == [8, 8]
    assert config.env_kwargs == {"arms": 10}
    assert config.address is None
    assert config.mode == "async"
    assert config.iterations == 15


def test_override_syntax_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="must have the form key=value"):
        parse_override("maml.inner_lr")
    with pytest.raises(ConfigError, match="'iterations' is a value, not a section"):
        apply_overrides({"iterations": 3}, ["iterations.x=1"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"maml": {"inner_lrr": 0.1}}, "key 'maml.inner_lrr'; did you mean 'maml.inner_lr'?"),
        ({"itrations": 3}, "unknown config key 'itrations'; did you mean 'iterations'?"),
        ({"inner_lr": 0.1}, "unknown config key 'inner_lr'; did you mean 'maml.inner_lr'?"),
        ({"maml": {"outer": "sgd"}}, "'maml.outer' must be one of trpo, ppo, reptile, got 'sgd'"),
        ({"maml": {"estimator": "x"}}, "'maml.estimator' must be one of maml, dice"),
        ({"algorithm": "ppo"}, "'algorithm' must be one of maml, rl2"),
        ({"mode": "fast"}, "'mode' must be one of sync, async"),
        ({"device": "tpu"}, "'device' must be one of auto, cpu, cuda"),
        ({"on_env_error": "ignore"}, "'on_env_error' must be one of raise, drop"),
        ({"iterations": 0}, "'iterations' must be > 0 and <= 1000000, got 0"),
        ({"workers": -1}, "'workers' must be >= 0 and <= 10000, got -1"),
        ({"maml": {"meta_batch_size": 2.5}}, "'maml.meta_batch_size' must be an integer, got 2.5"),
        ({"maml": {"gamma": 1.5}}, "'maml.gamma' must be > 0 and <= 1, got 1.5"),
        ({"policy": {"hidden_sizes": [64, 0]}}, "every item of 'policy.hidden_sizes' must be > 0"),
        ({"policy": {"hidden_sizes": 64}}, "'policy.hidden_sizes' must be a list of integers"),
        ({"maml": 3}, "'maml' must be a section"),
        ({"maml": {"eval_inner_lrs": []}}, "'maml.eval_inner_lrs' must be a non-empty list"),
        ({"maml": {"inner_steps": 2, "eval_steps": 1}},
         "maml.eval_steps 1 evaluates fewer inner steps than training takes; expected at least "
         "inner_steps (2)"),
        ({"env_kwargs": [1]}, "'env_kwargs' must be a mapping"),
        ({"address": 5}, "'address' must be a string or null, got 5"),
        ({"rl2": {"reward_scale": 0}}, "'rl2.reward_scale' must be > 0, got 0"),
    ],
)
def test_bad_values_name_the_key_and_the_expected_form(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "maml: [1, 2\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    config = config_from_dict({"algorithm": "rl2", "env_kwargs": {"arms": 5}, "address": "auto"})
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert config_to_dict(config)["rl2"]["hidden_size"] == config.rl2.hidden_size


def test_every_key_of_the_schema_is_known() -> None:
    keys = all_keys()
    assert "maml.inner_lr" in keys and "rl2.hidden_size" in keys and "policy" in keys


SHIPPED = sorted(EXPERIMENTS.glob("*.yaml"))


def test_the_required_experiments_ship() -> None:
    names = {path.stem for path in SHIPPED}
    required = {
        "maml_navigation2d",
        "maml_halfcheetah_vel",
        "maml_halfcheetah_dir",
        "maml_ant_vel",
        "maml_ant_dir",
        *(f"{algorithm}_metaworld_{benchmark}" for algorithm in ("maml", "rl2")
          for benchmark in ("ml1_reach", "ml1_push", "ml1_pick_place", "ml10", "ml25", "ml45")),
        "rl2_bandit_k5_n10",
        "rl2_bandit_k5_n100",
        "rl2_tabular_mdp_n10",
        "rl2_tabular_mdp_n25",
        "rl2_navigation2d",
        "rl2_halfcheetah_vel",
    }
    assert required <= names, f"missing: {sorted(required - names)}"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_config_loads_and_validates(path: Path) -> None:
    config = load_config(path)
    assert config.algorithm in ("maml", "rl2")
    assert config.env.startswith("rlmeta/")
    # The env id must be a registered family (import registers them).
    import gymnasium as gym

    import rlmeta  # noqa: F401

    assert config.env in gym.registry


def test_navigation_config_has_the_paper_settings() -> None:
    config = load_config(EXPERIMENTS / "maml_navigation2d.yaml")
    assert (config.maml.meta_batch_size, config.maml.episodes_per_task) == (20, 20)
    assert (config.maml.inner_steps, config.maml.inner_lr, config.maml.max_kl) == (1, 0.1, 0.01)
    assert (config.policy.hidden_sizes, config.policy.activation) == ([100, 100], "relu")
    assert config.maml.outer == "trpo"


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from rlmeta.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="'cuda' was requested but torch sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda, got 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_choices_the_algorithm_code_dispatches_on_are_the_schemas() -> None:
    # The schema holds each setting's choices; code that maps a choice to an implementation
    # must know every one of them.
    import typing

    from rlmeta.maml.config import MAMLConfig
    from rlmeta.maml.objectives import ESTIMATORS
    from rlmeta.rl2.config import RL2Config
    from rlmeta.rl2.policy import RECURRENT_CELLS

    def choices(model, name):
        return typing.get_args(model.model_fields[name].annotation)

    assert choices(MAMLConfig, "estimator") == ESTIMATORS
    assert choices(RL2Config, "recurrent_cell") == tuple(RECURRENT_CELLS)


def test_python_construction_is_validated_with_the_same_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"^config key 'algorithm' must be one of maml, rl2, "
                                          r"got 'mamll'$"):
        ExperimentConfig(algorithm="mamll")
    with pytest.raises(ValueError,
                       match=r"^config key 'workers' must be >= 0 and <= 10000, got -3$"):
        ExperimentConfig(workers=-3)
    with pytest.raises(ConfigError, match="unknown config key 'wrokers'; did you mean 'workers'"):
        ExperimentConfig(wrokers=2)
    with pytest.raises(ConfigError, match="'policy.activation' must be one of relu, tanh"):
        PolicyConfig(activation="gelu")
    with pytest.raises(ConfigError, match="'iterations' must be > 0 and <= 1000000, got 0"):
        with_changes(ExperimentConfig(), iterations=0)


def test_assignment_is_validated() -> None:
    config = ExperimentConfig()
    with pytest.raises(ConfigError, match="'workers' must be >= 0 and <= 10000, got -1"):
        config.workers = -1
    with pytest.raises(ConfigError, match="'maml.inner_lr' must be > 0, got 0"):
        config.maml.inner_lr = 0
    with pytest.raises(ConfigError, match="'maml' must be a section"):
        config.maml = 5
    config.maml = {"inner_lr": 0.5}
    assert config.maml.inner_lr == 0.5 and config.maml.inner_steps == 1
    assert config.workers == 2


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", ".nan", ".inf"])
def test_non_finite_floats_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="'maml.inner_lr' must be a finite number"):
        load_config(write(tmp_path, f"maml:\n  inner_lr: {value}\n"))
    with pytest.raises(ConfigError, match="'policy.init_log_std' must be a finite number"):
        load_config(write(tmp_path, ""), [f"policy.init_log_std={value}"])
    with pytest.raises(ConfigError, match="'rl2.lr' must be a finite number"):
        ExperimentConfig(rl2={"lr": float(value.lstrip("."))})


def test_an_int_setting_takes_no_fraction_and_a_float_setting_takes_yaml_exponents(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="'rl2.hidden_size' must be an integer, got 2.7"):
        load_config(write(tmp_path, "rl2: {hidden_size: 2.7}\n"))
    with pytest.raises(ConfigError, match="'iterations' must be an integer, got 3.0"):
        ExperimentConfig(iterations=3.0)
    assert load_config(write(tmp_path, "rl2: {lr: 1e-3}\n")).rl2.lr == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("yaml_text", "override", "python", "message"),
    [
        ("workers: -3\n", "workers=-3", {"workers": -3},
         "'workers' must be >= 0 and <= 10000, got -3"),
        ("maml: {outer: sgd}\n", "maml.outer=sgd", {"maml": {"outer": "sgd"}},
         "'maml.outer' must be one of trpo, ppo, reptile, got 'sgd'"),
        ("rl2: {gamma: 1.5}\n", "rl2.gamma=1.5", {"rl2": {"gamma": 1.5}},
         "'rl2.gamma' must be > 0 and <= 1, got 1.5"),
        ("maml: {inner_steps: 0, outer: reptile}\n", "maml.outer=reptile",
         {"maml": {"inner_steps": 0, "outer": "reptile"}}, "maml.inner_steps 0 has no inner loop"),
    ],
)
def test_a_rule_fires_the_same_from_yaml_set_and_python(
    tmp_path: Path, yaml_text: str, override: str, python: dict, message: str
) -> None:
    base = "maml: {inner_steps: 0}\n" if "inner_steps" in yaml_text else ""
    errors = []
    with pytest.raises(ConfigError) as from_yaml:
        load_config(write(tmp_path, yaml_text))
    errors.append(from_yaml)
    with pytest.raises(ConfigError) as from_set:
        load_config(write(tmp_path, base), [override])
    errors.append(from_set)
    with pytest.raises(ConfigError) as from_python:
        ExperimentConfig(**python)
    errors.append(from_python)
    for info in errors:
        assert message in str(info.value) and "\n" not in str(info.value)


def test_every_setting_keeps_its_docstring() -> None:
    from rlmeta.maml.config import MAMLConfig
    from rlmeta.rl2.config import RL2Config

    for model in (ExperimentConfig, PolicyConfig, MAMLConfig, RL2Config):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no docstring"
    assert "Meta-SGD" in MAMLConfig.model_fields["learn_inner_lr"].description


METAWORLD = sorted(EXPERIMENTS.glob("*_metaworld_*.yaml"))


@pytest.mark.parametrize("path", METAWORLD, ids=[p.stem for p in METAWORLD])
def test_metaworld_configs_have_the_papers_settings(path: Path) -> None:
    # Yu et al. 2019's Table 1 runs; the files' headers say what is not from the paper.
    config = load_config(path)
    assert config.env == "rlmeta/MetaWorld-v0"
    assert config.env_kwargs.get("horizon", 500) == 500
    classes = {"ML1": 1, "ML10": 10, "ML25": 25, "ML45": 45}[config.env_kwargs["benchmark"]]
    if config.algorithm == "maml":
        settings = config.maml
        assert (config.policy.hidden_sizes, config.policy.activation) == ([128, 128], "tanh")
        assert (settings.episodes_per_task, settings.inner_lr, settings.max_kl) == (10, 1e-4, 0.01)
        assert (settings.inner_steps, settings.outer) == (1, "trpo")
        if classes <= 10:
            assert settings.meta_batch_size == 20
    else:
        settings = config.rl2
        assert (settings.hidden_size, settings.lr, settings.clip, settings.gae_lambda) == (
            256, 5e-4, 0.2, 0.95)
        assert settings.episodes_per_trial == 10
    # Tasks are drawn evenly across a split's classes: a divisible meta-batch holds each equally.
    assert settings.meta_batch_size % classes == 0

"""conf/ composes for every option of every group, and the values reach the objects they configure."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from diffusion_lab.config import options
from diffusion_lab.diffusion import cosine_betas
from diffusion_lab.errors import ConfigError

GROUPS = ["dataset", "schedule", "model", "sampler", "trainer", "logger", "callbacks", "paths", "experiment"]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_resolves(compose_cfg, group, option):
    cfg = compose_cfg(f"{group}={option}")
    assert cfg.hydra.runtime.choices[group] == option
    resolved = {key: OmegaConf.select(cfg, key) for key in cfg if key != "hydra"}
    for key, node in resolved.items():  # every interpolation resolves
        if OmegaConf.is_config(node):
            OmegaConf.to_container(node, resolve=True)
    assert resolved["T"] >= 1


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), group


@pytest.mark.parametrize("model", options("model"))
def test_unet_returns_the_input_shape(compose_cfg, model):
    cfg = compose_cfg(f"model={model}")
    net = instantiate(cfg.model)
    x = torch.randn(2, cfg.dataset.channels, cfg.dataset.image_size, cfg.dataset.image_size)
    assert net(x, torch.tensor([0, 999])).shape == x.shape


def test_T_and_schedule_reach_the_module(compose_cfg):
    cfg = compose_cfg("T=200", "schedule=cosine")
    module = instantiate(cfg.module)
    assert module.diffusion.num_timesteps == 200
    assert torch.allclose(module.diffusion.betas, cosine_betas(200).float())
    assert cfg.run_name == "mnist-cosine-T200-unet_small"


def test_an_unusable_image_size_names_the_key(compose_cfg):
    cfg = compose_cfg("model.channel_mults=[1,2,2,2]")
    with pytest.raises(Exception) as info:
        instantiate(cfg.model)
    assert isinstance(info.value.__cause__ or info.value, ConfigError)
    assert "model.channel_mults=[1, 2, 2, 2]" in str(info.value) and "[1, 2, 2]" in str(info.value)


def test_data_dir_defaults_to_the_environment_variable(compose_cfg, monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DATA", "/some/where")
    assert compose_cfg().dataset.data_dir == "/some/where"
    monkeypatch.delenv("DIFFUSION_LAB_DATA")
    assert compose_cfg().dataset.data_dir == "./data"

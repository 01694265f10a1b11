"""`python -m diffusion_lab.viz ckpt=<run> …`: the six figures of a trained run (conf/viz.yaml), one path a line."""

from omegaconf import DictConfig

from diffusion_lab.cli import hydra_command
from diffusion_lab.config_checks import check_viz_config
from diffusion_lab.viz import write_all


def print_figures(cfg: DictConfig) -> None:
    for path in write_all(cfg.ckpt, cfg.out, cfg.seed, list(cfg.steps), list(cfg.samplers), cfg.ema, cfg.n_seeds):
        print(path)


main = hydra_command("viz", check_viz_config, print_figures)

if __name__ == "__main__":
    main()

"""`python -m diffusion_lab.metrics.feature_net dataset=…`: train (once) and cache a data set's feature net
(conf/feature_net.yaml), and print its record as JSON."""

import json

from omegaconf import DictConfig

from diffusion_lab.cli import hydra_command
from diffusion_lab.config_checks import check_feature_net_config
from diffusion_lab.metrics.feature_net import load_feature_net

SETTINGS = ("epochs", "batch_size", "lr", "num_features", "seed", "flip")  # FeatureNetSettings; null: the default


def print_record(cfg: DictConfig) -> None:
    _, record = load_feature_net(cfg.dataset.name, cfg.data_dir, cfg.cache_dir, **{k: cfg[k] for k in SETTINGS})
    print(json.dumps(record))


main = hydra_command("feature_net", check_feature_net_config, print_record)

if __name__ == "__main__":
    main()

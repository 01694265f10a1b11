"""The data module reads torchvision's IDX layout into memory and fails clearly when the files are missing."""

import pytest
import torch

from diffusion_lab.data import DiffusionDataModule, IndexBatches, load_split
from diffusion_lab.errors import ConfigError
from diffusion_lab.images import to_model_space


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_loads_uint8_images_and_a_fixed_validation_subset(tiny_data, name):
    dm = DiffusionDataModule(name=name, data_dir=str(tiny_data), batch_size=16, val_size=40, download=False)
    dm.setup("fit")
    images, labels, index = dm.transfer_batch_to_device(next(iter(dm.val_dataloader())), torch.device("cpu"), 0)
    assert images.dtype == torch.uint8 and images.shape == (16, 1, 28, 28)
    assert index.tolist() == list(range(16))
    assert torch.equal(images, dm.val_images[:16]) and torch.equal(labels, dm.splits["val"][1][:16])
    assert len(dm.val_images) == 40 and len(dm.splits["train"][0]) == 256
    x = to_model_space(images)
    assert x.min() >= -1 and x.max() <= 1


def test_train_order_is_fixed_by_the_seed(tiny_data):
    def first_indices(seed):
        torch.manual_seed(seed + 1000)  # the global generator plays no part
        dm = DiffusionDataModule(data_dir=str(tiny_data), batch_size=8, val_size=8, download=False, seed=seed)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))[1].tolist()

    assert first_indices(1) == first_indices(1) != first_indices(2)


def test_ranks_share_out_the_global_batches_of_a_single_process():
    single = list(IndexBatches(50, 12, shuffle=True, seed=3))
    ranks = [list(IndexBatches(50, 4, shuffle=True, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert [len(r) for r in ranks] == [4, 4, 4] == [len(IndexBatches(50, 4, True, 3, r, 3)) for r in range(3)]
    for k, batch in enumerate(single):  # global batch k is the single process's batch k, cut in rank order
        assert torch.equal(torch.cat([ranks[r][k] for r in range(3)]), batch)
    epoch1 = IndexBatches(50, 12, shuffle=True, seed=3)
    epoch1.set_epoch(1)
    assert not torch.equal(next(iter(epoch1)), single[0])


@pytest.mark.parametrize("n, batch_size, world_size", [(41, 4, 3), (5, 4, 3), (40, 8, 2), (7, 16, 1)])
def test_evaluation_batches_hold_every_index_exactly_once(n, batch_size, world_size):
    ranks = [IndexBatches(n, batch_size, shuffle=False, rank=r, world_size=world_size) for r in range(world_size)]
    seen = torch.cat([b for r in ranks for b in r])
    assert sorted(seen.tolist()) == list(range(n))  # no padding, no duplicate
    assert all(len(list(r)) == len(r) for r in ranks)
    assert max(len(b) for r in ranks for b in r) <= batch_size


def test_missing_files_offline_fail_with_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # a closed port: the download fails at once
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with pytest.raises(ConfigError) as info:
        load_split("mnist", tmp_path, train=True)
    message = str(info.value)
    assert "paths.data_dir" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "download failed" in message
    assert "\n" not in message


def test_bad_names_and_sizes_name_the_key(tiny_data):
    with pytest.raises(ConfigError, match="dataset.name='cifar'.*mnist, fashion_mnist"):
        DiffusionDataModule(name="cifar")
    dm = DiffusionDataModule(data_dir=str(tiny_data), val_size=10_000, download=False)
    with pytest.raises(ConfigError, match=r"dataset.val_size=10000: allowed values are 1..64"):
        dm.setup("fit")

"""Prediction targets (ε, x_0, v), Min-SNR-γ weighting, class conditioning and classifier-free guidance."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_TRAIN, run_cli
from diffusion_lab.cli import evaluate_main, sample_main
from diffusion_lab.diffusion import Denoiser, GaussianDiffusion, cosine_betas, linear_betas
from diffusion_lab.diffusion.parameterization import eps_from, min_snr_weight, target, x0_from
from diffusion_lab.rules import PREDICTIONS
from diffusion_lab.models import UNet
from diffusion_lab.sampling import DDIMSampler, DDPMSampler, DPMSolverSampler


@pytest.mark.parametrize("make_betas", [linear_betas, cosine_betas])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_conversions_are_exact_inverses_at_every_t(make_betas, prediction):
    alpha_bar = torch.cumprod(1 - make_betas(1000), 0).reshape(-1, 1)  # float64, every t at once
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1000, 8, generator=g, dtype=torch.float64), torch.randn(1000, 8, generator=g, dtype=torch.float64)
    xt = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    output = target(prediction, x0, eps, alpha_bar)
    torch.testing.assert_close(eps_from(prediction, output, xt, alpha_bar), eps, rtol=0, atol=1e-9)
    torch.testing.assert_close(x0_from(prediction, output, xt, alpha_bar), x0, rtol=0, atol=1e-9)
    v = alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0  # Salimans & Ho's definition, written out
    torch.testing.assert_close(target("v", x0, eps, alpha_bar), v, rtol=0, atol=0)


def oracle(prediction: str, diffusion: GaussianDiffusion, x0_hat: torch.Tensor):
    """A network of this parameterisation whose x_0 estimate is always `x0_hat`."""

    def net(xt, t):
        a = diffusion.alphas_cumprod[t].reshape(-1, 1, 1, 1).double()
        eps_hat = (xt.double() - a.sqrt() * x0_hat) / (1 - a).sqrt()
        return target(prediction, x0_hat, eps_hat, a).float()

    return net


def test_min_snr_weighting_is_one_loss_in_every_parameterisation():
    """For the same x_0 estimate, each parameterisation's weighted loss is min(SNR, γ)·‖x_0 − x̂_0‖² (Hang et al.
    2023, eq. 9): the weights undo the factors SNR (ε) and SNR + 1 (v) between the target errors."""
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(64, 1, 4, 4, generator=g), torch.randn(64, 1, 4, 4, generator=g)
    x0_hat = x0.double() + 0.1 * torch.randn(64, 1, 4, 4, generator=g, dtype=torch.float64)
    t = torch.arange(0, 1000, 1000 // 64)[:64]
    losses = {}
    for prediction in PREDICTIONS:
        diffusion = GaussianDiffusion(cosine_betas(1000), prediction=prediction, loss_weighting="min_snr")
        losses[prediction] = diffusion.per_sample_loss(oracle(prediction, diffusion, x0_hat), x0, t, noise)
    a = GaussianDiffusion(cosine_betas(1000)).alphas_cumprod[t].double()
    expected = (a / (1 - a)).clamp(max=5.0) * (x0.double() - x0_hat).pow(2).flatten(1).mean(1)
    for prediction in PREDICTIONS:
        torch.testing.assert_close(losses[prediction].double(), expected, rtol=2e-3, atol=1e-6)
    assert torch.equal(min_snr_weight("eps", torch.tensor([0.5])), torch.tensor([1.0]))  # SNR 1 < γ: no change


@pytest.mark.parametrize("sampler_class", [DDIMSampler, DDPMSampler, DPMSolverSampler])
def test_an_oracle_in_each_parameterisation_samples_the_same_images(sampler_class):
    """A network that knows x_0 gives the same chain whatever it predicts: every sampler converts to ε."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(4, 1, 8, 8, generator=g)
    results = {}
    for prediction in PREDICTIONS:
        diffusion = GaussianDiffusion(linear_betas(1000), prediction=prediction)
        sampler = sampler_class(diffusion, steps=50)
        results[prediction] = sampler.sample(Denoiser(oracle(prediction, diffusion, x0), diffusion), noise,
                                             torch.Generator().manual_seed(3))
    for prediction in ("x0", "v"):
        torch.testing.assert_close(results[prediction], results["eps"], rtol=0, atol=2e-3)
    torch.testing.assert_close(results["eps"].double(), x0, rtol=0, atol=2e-3)


class AffineNet(torch.nn.Module):
    """out = x·(1 + t/1000) + bias[label]: simple enough to check the guidance combination exactly."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.bias = torch.tensor([0.1, -0.2, 0.3, 0.0])  # the last entry: no class

    def forward(self, x, t, labels=None):
        labels = torch.full_like(t, self.num_classes) if labels is None else labels
        return x * (1 + t / 1000).reshape(-1, 1, 1, 1) + self.bias[labels].reshape(-1, 1, 1, 1)


def test_guidance_combines_conditional_and_unconditional_outputs_and_w0_is_conditional():
    diffusion = GaussianDiffusion(linear_betas(1000))
    net, x, t = AffineNet(), torch.randn(3, 1, 4, 4), torch.tensor([10, 500, 999])
    labels = torch.tensor([0, 1, 2])
    w = 2.5
    guided = Denoiser(net, diffusion, labels, guidance_scale=w)(x, t)
    torch.testing.assert_close(guided, (1 + w) * net(x, t, labels) - w * net(x, t))  # ε-prediction: output is ε
    sampler = DDIMSampler(diffusion, steps=20)
    plain = sampler.sample(lambda x_, t_: net(x_, t_, labels), x)
    assert torch.equal(sampler.sample(Denoiser(net, diffusion, labels, guidance_scale=0.0), x), plain)
    with pytest.raises(ValueError, match="needs the classes"):
        Denoiser(net, diffusion, guidance_scale=1.0)(x, t)


def test_a_class_conditional_unet_uses_its_label_and_a_null_class():
    torch.manual_seed(0)
    net = UNet(channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(), num_classes=10)
    for weight in net.parameters():  # the zero-initialised output layers would hide every difference
        torch.nn.init.normal_(weight, std=0.2)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 700])
    three, seven = net(x, t, torch.tensor([3, 3])), net(x, t, torch.tensor([7, 7]))
    assert three.shape == x.shape and not torch.allclose(three, seven)
    assert torch.equal(net(x, t), net(x, t, torch.tensor([10, 10])))  # no labels: the null class
    with pytest.raises(ValueError, match="unconditional"):
        UNet(channels=8, channel_mults=(1,), num_res_blocks=1, attention_resolutions=())(x, t, torch.tensor([1, 2]))


@pytest.mark.slow
def test_a_conditional_v_prediction_run_samples_each_class_and_scores_guidance(tiny_data, tmp_path, run_in_process):
    train = run_cli("train.py", *TINY_TRAIN, "trainer.max_epochs=1", "model.num_classes=10", "prediction=v",
                    "loss_weighting=min_snr", "logger=csv", "sampling.n_images=12", "quality.final_steps=[]",
                    "~callbacks.figures", f"quality.feature_net.cache_dir={tmp_path}", f"paths.log_dir={tmp_path}",
                    data=tiny_data)
    assert train.returncode == 0, train.stderr[-3000:]
    (run,) = [p.parent for p in tmp_path.glob("*/*/.hydra")]
    final = np.asarray(Image.open(run / "samples" / "final_ddim-50.png"))
    assert final.shape[:2] == (10 * 30 + 2, 2 * 30 + 2)  # training's grids: 12 images in one row per class
    with open(run / "csv" / "metrics.csv") as f:
        assert "val/class_accuracy@5" in f.readline().split(",")
    one = run_in_process(sample_main, f"ckpt={run}", "class=3", "guidance_scale=2", "steps=5", "n=4", "progress=false")
    assert one.returncode == 0, one.stderr[-3000:]
    settings = json.loads((run / "samples" / "ddim-5-n4-seed0-class3-w2" / "settings.json").read_text())
    assert settings["labels"] == [3, 3, 3, 3] and settings["guidance_scale"] == 2
    grid = run_in_process(sample_main, f"ckpt={run}", "steps=5", "n=15", "progress=false")
    assert grid.returncode == 0, grid.stderr[-3000:]
    image = np.asarray(Image.open(run / "samples" / "ddim-5-n15-seed0-classes-w0" / "grid.png"))
    assert image.shape[:2] == (10 * 30 + 2, 2 * 30 + 2)  # 10 rows, one per class, of 2 images or 1 and a blank
    assert (image[-30:, -30:] == 255).all()  # class 9's row: one image, then white
    evaluation = run_in_process(evaluate_main, f"ckpt={run}", "samplers=[ddim]", "steps=[5]", "guidance_scales=[0,2]",
                         "n=20", "real_n=32", "wandb=false", "feature_net.epochs=1",
                         f"feature_net.cache_dir={tmp_path}", f"data_dir={tiny_data}")
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    rows = json.loads((run / "eval" / "eval.json").read_text())["results"]
    assert [r["guidance_scale"] for r in rows] == [0, 2] and all(0 <= r["class_accuracy"] <= 1 for r in rows)
    for r in rows:  # 20 images, asked for classes 0..9 twice each: every class has a share in {0, ½, 1}
        assert [2 * a for a in r["class_accuracy_per_class"]] == [round(2 * a) for a in r["class_accuracy_per_class"]]
        assert sum(r["class_accuracy_per_class"]) / 10 == pytest.approx(r["class_accuracy"])
    assert (run / "eval" / "class_accuracy_vs_guidance.png").exists()

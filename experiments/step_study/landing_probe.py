"""Why DPM-Solver++(2M) on the `linspace` schedule is worse at 20 NFE than at 10: its second-order step onto t = 0.

    python experiments/step_study/landing_probe.py [--model fashion_mnist_linear] [--nfe 10 20 50] [--n 2000]

`linspace` ends on t = 0, so its last step of the ODE is one long step in λ = log(α/σ) (t = 53 → 0 at 20 NFE: h =
2.9 after steps of 0.7), which the multistep solver takes at second order from a difference of data predictions
over a step four times shorter. The probe runs 2M on `linspace` as the study does and with that one step at first
order, on the study's seeds (image i from the noise (seed 0, i)), and prints for each:
- the root-mean-square distance of 64 images to the ODE's solution (2M, 200 steps, `trailing`), per pixel in [−1, 1];
- FID at n (in the study's feature space) and the paired ΔFID of the first-order landing against the study's own
  setting, from the same bootstrap replicates (evaluate.py's); the study's setting is also re-scored here, so its
  FID must match results/MODEL/dpm_solver/nfeK/eval.json.
"""

import argparse
from pathlib import Path

import torch

from diffusion_lab.checkpoints import load_run
from diffusion_lab.evaluate import local_data_dir
from diffusion_lab.metrics import QualityMetrics
from diffusion_lab.metrics.measure import measure
from diffusion_lab.metrics.uncertainty import bootstrap
from diffusion_lab.rng import ImageNoise
from diffusion_lab.sampling import DPMSolverSampler

HERE = Path(__file__).resolve().parent


class FirstOrderLanding(DPMSolverSampler):
    """DPM-Solver++ whose step onto the last timestep (t = 0 on `linspace`) is first order (DDIM's)."""

    def order_at(self, i: int) -> int:
        return 1 if i == self.num_steps - 2 else super().order_at(i)


def ode_solution(module, chains: int) -> torch.Tensor:
    """The first `chains` images of the study's seeds, solved with 2M on 200 `trailing` steps (converged: the ODE
    solvers' FIDs at NFE 100 and 200 differ by at most 0.2 on both headlines)."""
    noise = ImageNoise(0, range(chains))
    return DPMSolverSampler(module.diffusion, steps=200, spacing="trailing").sample(
        module.denoiser(), noise.randn(module.image_shape), noise)


def ode_error(module, sampler: DPMSolverSampler, reference: torch.Tensor) -> float:
    """Root-mean-square distance per pixel of `sampler`'s images to `reference`, from the same noise."""
    noise = ImageNoise(0, range(len(reference)))
    x = sampler.sample(module.denoiser(), noise.randn(module.image_shape), noise)
    return (x - reference).pow(2).flatten(1).mean(1).sqrt().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fashion_mnist_linear",
                        choices=sorted(p.name for p in (HERE / "models").iterdir()))
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--n", type=int, default=2000, help="images of each FID (the study's headline n)")
    parser.add_argument("--chains", type=int, default=64, help="images of the distance to the ODE's solution")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    module, run_cfg, _ = load_run(HERE / "models" / args.model)
    reference = ode_solution(module, args.chains)
    metrics = QualityMetrics.for_dataset(run_cfg.dataset.name, local_data_dir(run_cfg.dataset.data_dir),
                                         cache_dir=HERE / "feature_nets")
    print(f"{args.model}: DPM-Solver++(2M) on linspace, the step onto t = 0 at second order (as the study) or first\n")
    print("| NFE | step onto t = 0 | RMS to the ODE's solution | FID [95 % CI] | ΔFID, first against second order |")
    print("|---|---|---|---|---|")
    for nfe in args.nfe:
        samplers = {"second": DPMSolverSampler(module.diffusion, steps=nfe, spacing="linspace"),
                    "first": FirstOrderLanding(module.diffusion, steps=nfe, spacing="linspace")}
        results, statistics = {}, {}
        for order, sampler in samplers.items():
            results[order], statistics[order] = measure(module.denoiser(), sampler, metrics, args.n,
                                                        module.image_shape, 0, 64, "cpu", return_statistics=True)
        cis, paired = bootstrap(statistics, len(metrics.real_features), args.n, pairs=[("first", "second")])
        d = next(p for p in paired if p["metric"] == "fid")
        for order, sampler in samplers.items():
            low, high = cis[order]["fid_ci"]
            delta = f"{d['diff']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}]" if order == "first" else ""
            print(f"| {nfe} | {order} order | {ode_error(module, sampler, reference):.4f} | "
                  f"{results[order]['fid']:.1f} [{low:.1f}, {high:.1f}] | {delta} |", flush=True)


if __name__ == "__main__":
    main()

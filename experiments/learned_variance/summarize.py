"""The tables of RESULTS.md from results/<kind>/eval*/eval.json and summary.json: bits per dimension with each
term, and respaced DDPM's FID at 25/50/100 steps with its interval and the paired differences (a setting measured
by two evaluations on the same seeds is listed once: its numbers are the same).

    python experiments/learned_variance/summarize.py > experiments/learned_variance/tables.md
"""

import json
from pathlib import Path

HERE = Path(__file__).parent
KINDS = {"fixed": "fixed σ² = β̃, L_simple", "learned": "learned Σ_θ, L_hybrid"}


def interval(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def merged(kind: str) -> dict:
    """One report of every eval folder of a model: the bound, and each setting and paired difference once."""
    report = {"results": [], "paired": []}
    seen = set()
    for path in sorted((HERE / "results" / kind).glob("eval*/eval.json")):
        part = json.loads(path.read_text())
        if "nll" in part:  # the full-T bound as `nll`; a respaced one (and the ODE's) beside it
            report["nll" if part["nll"]["steps"] == part["T"] else "respaced_nll"] = part["nll"]
        for r in part.get("results", []):
            if (r["sampler"], r["steps"]) not in seen:
                seen.add((r["sampler"], r["steps"]))
                report["results"].append(r)
        report["paired"] += [p for p in part.get("paired", [])
                             if (p["setting"], p["against"]) not in {(q["setting"], q["against"]) for q in report["paired"]}]
    return report


def main() -> None:
    runs = {k: (merged(k), json.loads((HERE / "results" / k / "summary.json").read_text())) for k in KINDS}
    print("| model | optimizer steps | train s | bound, bits/dim [95 % CI] | prior L_T | decoder L_0 | KL terms "
          "Σ L_t | n | val/bpd in training (uniform strata, since replaced) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, (report, summary) in runs.items():
        nll, terms = report["nll"], report["nll"]["terms"]
        print(f"| {KINDS[kind]} | {summary['optimizer_steps']} | {summary['train_seconds']:.0f} | "
              f"**{nll['bpd']:.3f}** {interval(nll['bpd_ci'])} | {terms['prior']['bpd']:.1e} | "
              f"{terms['decoder']['bpd']:.3f} {interval(terms['decoder']['bpd_ci'])} | "
              f"{terms['kl']['bpd']:.3f} {interval(terms['kl']['bpd_ci'])} | {nll['n']} | "
              f"{summary['val_metrics']['bpd']:.3f} |")
    print()
    print("| model | bound of the respaced chain, bits/dim [95 % CI] | its steps | n | probability-flow ODE, bits/dim "
          "[95 % CI] | n | solver calls, summed over batches of 50 images |")
    print("|---|---|---|---|---|---|---|")
    for kind, (report, _) in runs.items():
        if "respaced_nll" in report:
            nll = report["respaced_nll"]
            ode = nll.get("ode") or {}
            print(f"| {KINDS[kind]} | **{nll['bpd']:.3f}** {interval(nll['bpd_ci'])} | {nll['steps']} | {nll['n']} | "
                  + (f"**{ode['bpd']:.3f}** {interval(ode['bpd_ci'])} | {ode['n']} | {ode['network_evaluations']} |"
                     if ode else "- | - | - |"))
    print()
    print("| model | sampler (σ²) | DDPM steps | FID [95 % CI] | real-data floor | precision | recall | coverage | s per 1,000 images |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, (report, _) in runs.items():
        for r in sorted(report["results"], key=lambda r: (r["steps"], r["sampler"])):
            print(f"| {KINDS[kind]} | {r['sampler']} | {r['steps']} | **{r['fid']:.1f}** [{r['fid_ci'][0]:.1f}, {r['fid_ci'][1]:.1f}] | "
                  f"{r['floor_fid']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['coverage']:.3f} | "
                  f"{r['seconds_per_1k']:.0f} |")
    print()
    print("Paired differences within each model (the same 1,000 seeds; * the 95 % interval excludes 0):")
    print()
    print("| model | setting | against | ΔFID [95 % CI] |")
    print("|---|---|---|---|")
    for kind, (report, _) in runs.items():
        for p in report["paired"]:
            if p["metric"] == "fid":
                star = " *" if p["distinguishable"] else ""
                print(f"| {KINDS[kind]} | {p['setting']} | {p['against']} | {p['diff']:+.1f} "
                      f"[{p['ci'][0]:+.1f}, {p['ci'][1]:+.1f}]{star} |")


if __name__ == "__main__":
    main()

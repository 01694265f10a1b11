"""Report on runs: `python report.py <multirun dir | run dirs...> [-o report.html]` (see diffusion_lab/report/)."""

from diffusion_lab.report import main

if __name__ == "__main__":
    main()

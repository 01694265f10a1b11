"""`python -m diffusion_lab.report`: the same command line as report.py."""

import sys

from diffusion_lab.report.cli import main

if __name__ == "__main__":
    sys.exit(main())

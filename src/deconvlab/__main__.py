"""``python -m deconvlab ...`` (used by ``torchrun -m deconvlab scan ...``)."""

from deconvlab.cli import main

if __name__ == "__main__":
    main()

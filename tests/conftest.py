"""Shared test set-up."""

import os

# Passive OpenMP waiting (see vireid/cli/__init__.py): tests share 2 cores with whatever else runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

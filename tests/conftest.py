"""Shared test set-up."""

import os

import pytest

# Passive OpenMP waiting (see vireid/cli/__init__.py): tests share 2 cores with whatever else runs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# vireid's cache (checked image sets) goes to a fresh folder per test session, never the user's home.
if "VIREID_CACHE" not in os.environ:
    import tempfile

    os.environ["VIREID_CACHE"] = tempfile.mkdtemp(prefix="vireid-test-cache-")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models and indexes: one torch and one FAISS thread are faster than two on a shared
    2-core machine (and make timings of the suite predictable)."""
    import faiss
    import torch

    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(faiss_threads)

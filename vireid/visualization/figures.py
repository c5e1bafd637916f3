"""Writing a matplotlib figure: one PNG, written atomically (a killed run never leaves half a picture),
its folder made, the figure closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vireid.io import atomic_path


def save_png(fig: Any, path: str | Path, *, dpi: float | None = None) -> Path:
    """Save ``fig`` as a PNG at ``path`` (``dpi`` default: the figure's own), close it, return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **({} if dpi is None else {"dpi": dpi}))
    plt.close(fig)
    return path

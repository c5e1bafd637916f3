"""Ranked-list pictures (paper A Fig. 4): each row a query and its top-k gallery images, correct
matches framed green, wrong ones red, with the protocol's removal rule applied as in evaluation.

Each match is labelled with its rank, identity, camera and cosine similarity; each query with its
identity, camera and the rank of its first true match (so a row of the worst queries says how far down
the true match was); a legend explains the frames. Fonts are sized for a slide (Pillow's scalable
default font)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vireid.data.records import ImageRecord
from vireid.errors import VireidError
from vireid.evaluation.metrics import gallery_exclusion_mask
from vireid.io import atomic_path
from vireid.visualization.fonts import slide_font

GREEN = (22, 163, 74)
RED = (220, 38, 38)
QUERY_FRAME = (37, 99, 235)
BACKGROUND = (255, 255, 255)
TEXT = (30, 30, 30)


def ranked_lists(
    distmat: np.ndarray,
    queries: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    *,
    protocol: str,
    topk: int = 10,
) -> np.ndarray:
    """Gallery indices ``[Q, topk]`` of each query's best matches under ``protocol``'s removal rule
    (-1 where fewer than ``topk`` gallery images remain). Ties: lower gallery index first, as in
    :func:`~vireid.evaluation.rank_metrics`."""
    distmat = np.asarray(distmat, dtype=np.float64)
    if distmat.shape != (len(queries), len(gallery)):
        raise ValueError(f"distmat has shape {distmat.shape}, expected ({len(queries)}, {len(gallery)})")
    excluded = gallery_exclusion_mask(
        np.array([q.pid for q in queries]), np.array([g.pid for g in gallery]),
        np.array([q.camera for q in queries]), np.array([g.camera for g in gallery]), protocol=protocol,
    )
    masked = np.where(excluded, np.inf, distmat)
    order = np.argsort(masked, axis=1, kind="stable")[:, :topk]
    kept = np.take_along_axis(~excluded, order, axis=1)
    out = np.full((len(queries), topk), -1, dtype=np.int64)
    out[:, : order.shape[1]] = np.where(kept, order, -1)
    return out


def _thumb(path: Path, size: tuple[int, int]) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)


def draw_ranked_lists(
    distmat: np.ndarray,
    queries: Sequence[ImageRecord],
    gallery: Sequence[ImageRecord],
    out: str | Path,
    *,
    protocol: str,
    rows: Sequence[int] | None = None,
    topk: int = 10,
    thumb: tuple[int, int] = (128, 64),
    title: str | None = None,
) -> Path:
    """Draw the top-``topk`` ranked list of each query index in ``rows`` (default: the first 8) and
    write a PNG atomically. ``distmat`` holds negative cosine similarities (as the evaluator's); labels
    show the similarity. Returns the path written."""
    rows = list(range(min(8, len(queries)))) if rows is None else list(rows)
    if not rows:
        raise ValueError("no query rows to draw")
    ranks = ranked_lists(distmat, queries, gallery, protocol=protocol, topk=topk)
    first = first_match_ranks(distmat, queries, gallery, protocol=protocol)
    th, tw = thumb
    pad, frame = 8, 4
    font, small, big = slide_font(14), slide_font(12), slide_font(18)
    label_h = 34
    title_h = 34 if title else 0
    legend_h = 30
    cell_w, cell_h = tw + 2 * frame + pad, th + 2 * frame + label_h + pad
    gap = 24  # between the query and its ranked list
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(int(measure.textlength(title or "", font=big)), 720) + 2 * pad
    width = max(pad + cell_w * (topk + 1) + gap, text_w)
    height = title_h + legend_h + pad + cell_h * len(rows)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 8), title, fill=TEXT, font=big)
    x = pad
    for colour, text in ((QUERY_FRAME, "query"), (GREEN, "same person"), (RED, "other person")):
        draw.rectangle([x, title_h + 8, x + 16, title_h + 24], fill=colour)
        draw.text((x + 22, title_h + 8), text, fill=TEXT, font=font)
        x += 40 + int(draw.textlength(text, font=font))
    draw.text((x + 10, title_h + 8), "labels: rank, person id, camera, cosine similarity", fill=TEXT, font=font)
    for r, qi in enumerate(rows):
        y = title_h + legend_h + pad + r * cell_h
        q = queries[qi]
        found = f"true match at {first[qi]}" if first[qi] else "no true match"
        cells = [(q, QUERY_FRAME, (f"query id {q.pid} c{q.camera}", found), pad)]
        for k, gi in enumerate(ranks[qi]):
            if gi < 0:
                continue
            g = gallery[gi]
            colour = GREEN if g.pid == q.pid else RED
            score = -float(distmat[qi, gi])
            cells.append((g, colour, (f"{k + 1}. id {g.pid} c{g.camera}", f"sim {score:.3f}"),
                          pad + gap + (k + 1) * cell_w))
        for rec, colour, (line1, line2), x in cells:
            draw.rectangle([x, y, x + tw + 2 * frame - 1, y + th + 2 * frame - 1], fill=colour)
            sheet.paste(_thumb(rec.path, thumb), (x + frame, y + frame))
            draw.text((x, y + th + 2 * frame + 2), line1, fill=TEXT, font=small)
            draw.text((x, y + th + 2 * frame + 17), line2, fill=TEXT, font=small)
    out = Path(out)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out


def first_match_ranks(distmat: np.ndarray, queries: Sequence[ImageRecord], gallery: Sequence[ImageRecord], *,
                      protocol: str) -> np.ndarray:
    """1-based position of each query's first true match in its raw ranking after the protocol's
    removal rule (``0`` where no true match remains). Used to pick the worst queries to show."""
    q_pids = np.array([q.pid for q in queries])
    g_pids = np.array([g.pid for g in gallery])
    excluded = gallery_exclusion_mask(q_pids, g_pids, np.array([q.camera for q in queries]),
                                      np.array([g.camera for g in gallery]), protocol=protocol)
    masked = np.where(excluded, np.inf, np.asarray(distmat, dtype=np.float64))
    true = (q_pids[:, None] == g_pids[None, :]) & ~excluded
    best_true = np.where(true, masked, np.inf).min(axis=1)
    ranks = (masked < best_true[:, None]).sum(axis=1) + 1
    return np.where(true.any(axis=1), ranks, 0)


def pick_queries(distmat: np.ndarray, queries: Sequence[ImageRecord], gallery: Sequence[ImageRecord], *,
                 protocol: str, how: str = "per_identity", count: int = 8) -> list[int]:
    """Query rows to draw: ``per_identity`` (the first query of each identity, so rows show different
    people) or ``worst`` (the queries whose first true match ranks lowest)."""
    if how == "per_identity":
        rows, seen = [], set()
        for i, rec in enumerate(queries):
            if rec.pid not in seen:
                seen.add(rec.pid)
                rows.append(i)
        return rows[:count]
    if how == "worst":
        ranks = first_match_ranks(distmat, queries, gallery, protocol=protocol)
        valid = np.flatnonzero(ranks > 0)
        order = valid[np.argsort(-ranks[valid], kind="stable")]
        return [int(i) for i in order[:count]]
    raise ValueError(f"how must be 'per_identity' or 'worst', got {how!r}")


def ranked_list_picture(evaluator, model, out: str | Path, *, trial: int | None = None, how: str = "per_identity",
                        count: int = 8, rows: Sequence[int] | None = None, topk: int = 10,
                        title: str | None = None) -> Path:
    """Extract a trial's features with an :class:`~vireid.evaluation.evaluator.Evaluator` and draw the
    ranked lists of the query indices ``rows``, or of ``count`` queries chosen by :func:`pick_queries`."""
    protocol = evaluator.protocol
    trial = protocol.trials[0] if trial is None else trial
    _, queries, gallery, q, g = next(evaluator.trial_features(model, [trial]))
    distmat = (-(q @ g.T)).cpu().numpy()
    if rows is None:
        rows = pick_queries(distmat, queries, gallery, protocol=protocol.metric, how=how, count=count)
    else:
        bad = [i for i in rows if not 0 <= i < len(queries)]
        if bad:
            raise VireidError(f"query indices {bad}: trial {trial} has queries 0..{len(queries) - 1}")
    return draw_ranked_lists(distmat, queries, gallery, out, protocol=protocol.metric, rows=rows, topk=topk,
                             title=title)

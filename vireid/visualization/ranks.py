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


def row_cells(distmat: np.ndarray, queries: Sequence[ImageRecord], gallery: Sequence[ImageRecord], qi: int, *,
              ranked: np.ndarray, first_rank: int, excluded: np.ndarray) -> list[tuple[int, int, bool]]:
    """What a query's row shows: ``(gallery index, rank, true match)`` of its top-k, and when its first true
    match ranks below them, that match too (every row shows where the person was). ``excluded``: the
    gallery images the protocol's removal rule takes from this query's ranking."""
    q = queries[qi]
    cells = [(int(gi), k + 1, gallery[gi].pid == q.pid) for k, gi in enumerate(ranked[qi]) if gi >= 0]
    if first_rank > len(ranked[qi]):
        true = np.array([g.pid == q.pid for g in gallery]) & ~excluded
        scores = np.where(true, np.asarray(distmat[qi], dtype=np.float64), np.inf)
        cells.append((int(np.argmin(scores)), int(first_rank), True))  # ties: the lower gallery index, as ranked
    return cells


#: The slide layout: a 16:9 canvas the rows are fitted into (``--layout slide``).
SLIDE_SIZE = (1920, 1080)


def _geometry(th: int, tw: int, topk: int, extra: bool, rows: int, title: str | None, panels: int = 1) -> dict:
    """Sizes of a ranked-list sheet with ``th x tw`` thumbnails (text, frames and gaps scale with them), its
    rows in ``panels`` side by side."""
    scale = max(1.0, th / 128)
    pad, frame = int(8 * scale), max(4, int(4 * scale))
    fonts = (slide_font(int(14 * scale)), slide_font(int(12 * scale)), slide_font(int(18 * scale)))
    label_h, legend_h = int(34 * scale), int(30 * scale)
    title_h = int(34 * scale) if title else 0
    cell_w, cell_h = tw + 2 * frame + pad, th + 2 * frame + label_h + pad
    gap = int(24 * scale)  # between the query and its ranked list, and before a true match below the cut-off
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(int(measure.textlength(title or "", font=fonts[2])), int(720 * scale)) + 2 * pad
    panel_w = pad + cell_w * (topk + 1 + int(extra)) + gap * (1 + int(extra))
    width = max(panels * panel_w + (panels - 1) * 2 * gap, text_w)
    height = title_h + legend_h + pad + cell_h * -(-rows // panels)
    return {"scale": scale, "pad": pad, "frame": frame, "fonts": fonts, "label_h": label_h, "legend_h": legend_h,
            "title_h": title_h, "cell_w": cell_w, "cell_h": cell_h, "gap": gap, "panel_w": panel_w, "panels": panels,
            "per_panel": -(-rows // panels), "size": (width, height)}


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
    canvas: tuple[int, int] | None = None,
) -> Path:
    """Draw the top-``topk`` ranked list of each query index in ``rows`` (default: the first 8) and
    write a PNG atomically. ``distmat`` holds negative cosine similarities (as the evaluator's); labels
    show the similarity. A row whose first true match ranks below ``topk`` ends with that match, framed
    green and labelled with its rank. ``canvas`` (width, height), e.g. :data:`SLIDE_SIZE`: thumbnails
    and text are scaled so the sheet fills it (for a 16:9 slide). Returns the path written."""
    rows = list(range(min(8, len(queries)))) if rows is None else list(rows)
    if not rows:
        raise ValueError("no query rows to draw")
    ranks = ranked_lists(distmat, queries, gallery, protocol=protocol, topk=topk)
    first = first_match_ranks(distmat, queries, gallery, protocol=protocol)
    excluded = gallery_exclusion_mask(
        np.array([q.pid for q in queries]), np.array([g.pid for g in gallery]),
        np.array([q.camera for q in queries]), np.array([g.camera for g in gallery]), protocol=protocol)
    cells_of = {qi: row_cells(distmat, queries, gallery, qi, ranked=ranks, first_rank=int(first[qi]),
                              excluded=excluded[qi]) for qi in rows}
    extra = any(len(c) > topk for c in cells_of.values())  # a column for the true matches below the cut-off
    th, tw = thumb
    panels = 1
    if canvas is not None:  # the largest 2:1 thumbnails whose sheet fits the canvas, rows in 1-3 panels
        th = 0
        for n in range(1, min(3, len(rows)) + 1):
            h = 2 * (canvas[1] // (2 * -(-len(rows) // n)))
            while h > 32 and any(a > b for a, b in zip(_geometry(h, h // 2, topk, extra, len(rows), title, n)["size"],
                                                       canvas)):
                h -= 2
            if h > th:
                th, panels = h, n
        tw = th // 2
    geo = _geometry(th, tw, topk, extra, len(rows), title, panels)
    scale, pad, frame, gap = geo["scale"], geo["pad"], geo["frame"], geo["gap"]
    font, small, big = geo["fonts"]
    label_h, title_h, legend_h, cell_w, cell_h = (geo[k] for k in ("label_h", "title_h", "legend_h", "cell_w", "cell_h"))
    width, height = geo["size"]
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, int(8 * scale)), title, fill=TEXT, font=big)
    x = pad
    y0 = title_h + int(8 * scale)
    for colour, text in ((QUERY_FRAME, "query"), (GREEN, "same person"), (RED, "other person")):
        draw.rectangle([x, y0, x + int(16 * scale), y0 + int(16 * scale)], fill=colour)
        draw.text((x + int(22 * scale), y0), text, fill=TEXT, font=font)
        x += int(40 * scale) + int(draw.textlength(text, font=font))
    draw.text((x + 10, y0), "labels: rank, person id, camera, cosine similarity; last column: the true match "
              "when it ranks below the list", fill=TEXT, font=font)
    for r, qi in enumerate(rows):
        panel, within = divmod(r, geo["per_panel"])
        y = title_h + legend_h + pad + within * cell_h
        x0 = panel * (geo["panel_w"] + 2 * gap)
        q = queries[qi]
        found = f"match at {first[qi]}" if first[qi] else "no true match"
        cells = [(q, QUERY_FRAME, (f"query {q.pid} c{q.camera}", found), x0 + pad)]
        for gi, rank, correct in cells_of[qi]:
            g = gallery[gi]
            score = -float(distmat[qi, gi])
            x = x0 + pad + gap + rank * cell_w if rank <= topk else x0 + pad + 2 * gap + (topk + 1) * cell_w
            cells.append((g, GREEN if correct else RED, (f"{rank}. id {g.pid} c{g.camera}", f"sim {score:.3f}"), x))
        for rec, colour, (line1, line2), x in cells:
            draw.rectangle([x, y, x + tw + 2 * frame - 1, y + th + 2 * frame - 1], fill=colour)
            sheet.paste(_thumb(rec.path, (th, tw)), (x + frame, y + frame))
            draw.text((x, y + th + 2 * frame + 2), line1, fill=TEXT, font=small)
            draw.text((x, y + th + 2 * frame + int(17 * scale)), line2, fill=TEXT, font=small)
        if len(cells_of[qi]) > topk:  # an ellipsis between the list and the true match below it
            xe = x0 + pad + gap + (topk + 1) * cell_w
            draw.text((xe + gap // 4, y + th // 2), "…", fill=TEXT, font=big)
    if canvas is not None:  # centred on the slide
        slide = Image.new("RGB", (max(width, canvas[0]), max(height, canvas[1])), BACKGROUND)
        slide.paste(sheet, ((slide.width - width) // 2, (slide.height - height) // 2))
        sheet = slide
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
    people) or ``worst`` (the queries whose first true match ranks lowest, one per identity before a second
    of any, and then one per identity and camera; worst first)."""
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
        order = [int(i) for i in valid[np.argsort(-ranks[valid], kind="stable")]]
        # the worst query of each identity first (a picture of one person seen twice repeats itself), then
        # of each (identity, camera) not shown yet, then the rest
        picked: list[int] = []
        for key in (lambda i: queries[i].pid, lambda i: (queries[i].pid, queries[i].camera), lambda i: i):
            seen = {key(i) for i in picked}
            for i in order:
                if len(picked) == count:
                    return picked
                if i not in picked and key(i) not in seen:
                    seen.add(key(i))
                    picked.append(i)
        return picked
    raise ValueError(f"how must be 'per_identity' or 'worst', got {how!r}")


def ranked_list_picture(evaluator, model, out: str | Path, *, trial: int | None = None, how: str = "per_identity",
                        count: int = 8, rows: Sequence[int] | None = None, topk: int = 10,
                        title: str | None = None, canvas: tuple[int, int] | None = None) -> Path:
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
                             title=title, canvas=canvas)

"""dialogs.html beside report.md: every dialog with its pictures, questions, prediction vs reference, the rank of the
right answer and the reminders used, with filters for the question kind and for errors.

One self-contained file: styles, data (in the rows' attributes) and the filter script are inline, because a page
opened from file:// may not fetch its sibling files; only the pictures are separate, as <img> paths relative to the
report folder (os.path.relpath), so they load wherever the folders move together. Pictures are never copied unless
no relative path exists (another drive). No loading="lazy": a browser may then never load pictures below the fold.
"""
from __future__ import annotations

import os
import shutil
from collections import defaultdict
from html import escape
from pathlib import Path

import numpy as np

from services.evaluate.align import UNMARKED, Aligned
from shared.dialog_text import picture_numbers, shown_image
from shared.errors import InputError
from shared.images import ImageIndex
from shared.visdial import VisDialSplit

FILE_NAME = "dialogs.html"
KIND_ORDER = ("current", "memory", UNMARKED)
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h2{font-size:1.05em;margin:1.2em 0 .3em}
#filters{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ccc;z-index:1}
#filters label{margin-right:1em}
.pictures{display:flex;gap:.6em;flex-wrap:wrap}
.pictures figure{margin:0;font-size:.8em;text-align:center}
.pictures img{width:96px;height:96px;object-fit:contain;border:1px solid #ccc;background:#f7f7f7;display:block}
table.rounds{border-collapse:collapse;margin-top:.4em}
table.rounds td,table.rounds th{border:1px solid #ddd;padding:3px 6px;vertical-align:top;font-size:.9em}
tr.round[data-error="true"] td.rank{background:#fde2e2}
tr.round[data-error="false"] td.rank{background:#e1f5e4}
td.reminders{font-family:ui-monospace,monospace;font-size:.8em;white-space:pre-line}
"""
SCRIPT = """
// every round is a <tr class="round"> with data-kind and data-error; a dialog with no visible round is hidden
function applyFilters() {
  const kinds = new Set([...document.querySelectorAll('.f-kind:checked')].map(e => e.value));
  const mode = document.getElementById('f-errors').value;
  let shown = 0;
  for (const dialog of document.querySelectorAll('section.dialog')) {
    let visible = 0;
    for (const row of dialog.querySelectorAll('tr.round')) {
      const error = row.dataset.error;
      const ok = kinds.has(row.dataset.kind) &&
        (mode === 'all' || (mode === 'errors' && error === 'true') || (mode === 'right' && error === 'false'));
      row.style.display = ok ? '' : 'none';
      visible += ok;
    }
    dialog.style.display = visible ? '' : 'none';
    shown += visible;
  }
  document.getElementById('shown').textContent = shown + ' rounds shown';
}
document.querySelectorAll('#filters input, #filters select').forEach(e => e.addEventListener('change', applyFilters));
applyFilters();
"""


def check_images(images: str | Path, split: VisDialSplit) -> ImageIndex:
    """The image index of `images`, after checking every picture of the split is there (before any metric runs)."""
    index = ImageIndex.scan(images)
    missing = index.missing(split.image_ids())
    if missing:
        raise InputError(f"images={images}: no picture for {len(missing)} image id(s) of {split.path}, e.g. "
                         f"{missing[:5]}", fix="point images at the split's picture folder, or set images=null "
                                               "for dialogs.html without pictures")
    return index


def picture_src(path: Path, out_dir: Path) -> str:
    """The <img src> of a picture: relative to the report folder; a copy under images/ only when none exists."""
    try:
        return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
    except ValueError:  # another drive (Windows): no relative path
        copy = out_dir / "images" / path.name
        copy.parent.mkdir(exist_ok=True)
        shutil.copy2(path, copy)
        return f"images/{path.name}"


def _ranking(aligned: Aligned) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the right answer's rank (0 = not ranked) and the option ranked first (-1 = not ranked)."""
    n = len(aligned.line)
    rank, top = np.zeros(n, np.int64), np.full(n, -1, np.int64)
    if aligned.rankings is not None:
        rows = np.flatnonzero(aligned.ranked)
        top[rows] = aligned.rankings.rank_matrix(rows).argmin(axis=1)
        gradable = rows[aligned.gt_index[rows] >= 0]
        rank[gradable] = aligned.rankings.gt_rank(gradable, aligned.gt_index[gradable])
    return rank, top


def _pictures(dialog, index: ImageIndex | None, out_dir: Path) -> str:
    if index is None:
        return ""
    figures = [f'<figure><img src="{escape(picture_src(index.path(image_id), out_dir))}" alt="picture {number} '
               f'(image {image_id})"><figcaption>picture {number} · image {image_id}</figcaption></figure>'
               for image_id, number in picture_numbers(dialog).items()]
    return f'<div class="pictures">{"".join(figures)}</div>'


def _row(rnd, picture: int, i: int, aligned: Aligned, rank: np.ndarray, top: np.ndarray) -> str:
    error = "none" if rank[i] == 0 else str(bool(rank[i] > 1)).lower()
    ranked_first = escape(rnd.options[top[i]]) if top[i] >= 0 and rnd.options else "–"
    reminders = escape("\n".join(aligned.reminders[i])) if aligned.reminders and aligned.reminders[i] else "–"
    return (f'<tr class="round" data-kind="{escape(str(aligned.kind[i]))}" data-error="{error}">'
            f"<td>{rnd.round_id}</td><td>{picture}</td><td>{escape(str(aligned.kind[i]))}</td>"
            f"<td>{escape(rnd.question)}</td><td>{escape(aligned.answer[i])}</td>"
            f"<td>{escape(rnd.answer) if rnd.answer is not None else '–'}</td>"
            f'<td class="rank">{rank[i] or "–"}</td><td>{ranked_first}</td>'
            f'<td class="reminders">{reminders}</td></tr>')


def render(split: VisDialSplit, aligned: Aligned, out_dir: Path, index: ImageIndex | None, title: str) -> str:
    rank, top = _ranking(aligned)
    rows_of = defaultdict(dict)
    for i, (image_id, round_id) in enumerate(zip(aligned.image_id.tolist(), aligned.round_id.tolist())):
        rows_of[image_id][round_id] = i
    sections = []
    for dialog in split.dialogs:
        rows = rows_of.get(dialog.image_id)
        if not rows:
            continue
        numbers = picture_numbers(dialog)
        body = "".join(_row(rnd, numbers[shown_image(dialog, rnd)], rows[rnd.round_id], aligned, rank, top)
                       for rnd in dialog.rounds if rnd.round_id in rows)
        sections.append(
            f'<section class="dialog" id="dialog-{dialog.image_id}"><h2>Dialog of image {dialog.image_id}</h2>'
            f"{_pictures(dialog, index, out_dir)}"
            '<table class="rounds"><thead><tr><th>round</th><th>picture</th><th>kind</th><th>question</th>'
            "<th>prediction</th><th>reference</th><th>rank of the right answer</th><th>ranked first</th>"
            f"<th>reminders used</th></tr></thead><tbody>{body}</tbody></table></section>")
    kinds = [k for k in KIND_ORDER if (aligned.kind == k).any()]
    checks = "".join(f'<label><input type="checkbox" class="f-kind" value="{k}" checked> {k} '
                     f"({int((aligned.kind == k).sum())})</label>" for k in kinds)
    errors = int((rank > 1).sum())
    ranked = "" if aligned.rankings is not None else " disabled title=\"these predictions rank no options\""
    select = (f'<label>rounds: <select id="f-errors"{ranked}><option value="all">all</option>'
              f'<option value="errors">errors: right answer not ranked first ({errors})</option>'
              f'<option value="right">right answer ranked first ({int((rank == 1).sum())})</option></select></label>')
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f"<p>{len(sections)} dialogs, {len(aligned.line)} rounds; pictures "
            f"{'from ' + escape(str(index.root)) if index else 'not shown (images=null)'}.</p>"
            f'<div id="filters">kind: {checks}{select}<span id="shown"></span></div>'
            f'<main id="dialogs">{"".join(sections)}</main><script>{SCRIPT}</script></body></html>\n')


def write_dialogs_html(split: VisDialSplit, aligned: Aligned, out_dir: Path, index: ImageIndex | None,
                       title: str) -> Path:
    """Write `out_dir`/dialogs.html atomically; returns its path."""
    path = out_dir / FILE_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(split, aligned, out_dir, index, title), encoding="utf-8")
    os.replace(tmp, path)
    return path

"""A static HTML gallery of the overlays (``OUT/index.html``): one self-contained file, no server.

Each card shows the image's ``<stem>.thumb.jpg`` (the overlay shrunk, 40-49 kB for a MarsScapes panorama,
whose card takes a whole row) and links to the full-size ``<stem>.overlay.png`` (0.5-3.6 MB each: a page of
a few hundred panoramas loaded hundreds of MB). An image without a thumbnail (predicted by a version that
wrote none, then skipped on resume) shows its overlay.

Links are relative to ``OUT`` (so the folder can be moved or zipped) and percent-encoded; every text taken
from file names or messages is HTML-escaped, and the page is valid UTF-8 (a file name that is not is shown
with ``\\xNN`` escapes). Styles are inline: no external asset is ever fetched.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from marsunits.constants import CLASS_NAMES, PALETTE
from marsunits.inference.writers import SUFFIXES, has_outputs, is_panorama, printable

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.4em}.summary{max-width:70em}
.grid{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:.5em;width:22em}
figure img{max-width:100%;max-height:16em;display:block;margin:auto}
figure.panorama{width:auto;flex:1 1 100%}
figcaption{font-size:.85em;word-break:break-all}
.error{border-color:#c33;background:#fff4f4}.skipped{border-color:#aaa}
.key span{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em 0 1em}
table{border-collapse:collapse}td{padding:0 .5em 0 0}
"""


def _num(value: Any, fmt: str) -> str:
    if value in (None, ""):
        return "-"
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return html.escape(str(value))


def _nodata_fraction(row: Mapping[str, Any]) -> float | None:
    """The share of a row's pixels left out as no data (``nodata_max``): what its class shares leave of 1;
    None when that is under 0.05 % (rounding) or the shares are not known."""
    try:
        rest = 1.0 - sum(float(row["frac_" + n]) for n in CLASS_NAMES)
    except (KeyError, TypeError, ValueError):
        return None
    return rest if rest >= 0.0005 else None


def _label_score(path: str, metrics: Mapping[str, Any]) -> str:
    """The card's table row of the image's score against its label (``metrics.json``): its mIoU and pixel
    accuracy, or why it has none (no label, a label that could not be scored)."""
    entry = (metrics.get("per_image") or {}).get(path)
    if entry is not None:
        accuracy = _num(entry.get("pixel_accuracy"), ".1%")
        said = f"mIoU {_num(entry.get('miou'), '.3f')}, pixel accuracy {accuracy}"
    elif path in (metrics.get("label_errors") or {}):
        said = "not scored (metrics.json label_errors says why)"
    elif path in (metrics.get("missing_labels") or ()):
        said = "no label"
    else:
        return ""
    return f"<tr><td>label</td><td>{said}</td></tr>"


def _card(
    row: Mapping[str, Any], thumbnails: AbstractSet[str], metrics: Mapping[str, Any] | None = None
) -> str:
    rel = PurePosixPath(str(row["path"]))
    name = html.escape(rel.as_posix())
    status = str(row.get("status", ""))
    said = f"<br>error: {html.escape(str(row.get('message', '')))}" if status == "error" else ""
    if status != "error" and row.get("camera_error"):  # predicted, without metres: say why and the fix
        said = f"<br>camera file refused: {html.escape(str(row.get('message', '')))}"
    if not has_outputs(row):  # nothing written (an image whose camera file is broken has its mask)
        return f'<figure class="error"><figcaption><b>{name}</b>{said}</figcaption></figure>'
    # A name that is not UTF-8 is linked by its own bytes (%E9), as the file is named on disk.
    overlay = quote(rel.with_name(rel.stem + SUFFIXES["overlay"]).as_posix(), errors="surrogateescape")
    shown = overlay
    if str(row["path"]) in thumbnails:
        shown = quote(rel.with_name(rel.stem + SUFFIXES["thumb"]).as_posix(), errors="surrogateescape")
    mask = quote(rel.with_name(rel.stem + ".mask.png").as_posix(), errors="surrogateescape")
    contact = quote(rel.with_name(rel.stem + ".contact.geojson").as_posix(), errors="surrogateescape")
    numbers = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{_num(row.get('frac_' + n), '.1%')}</td></tr>" for n in CLASS_NAMES
    )
    nodata = _nodata_fraction(row)
    if nodata is not None:  # the shares are of all pixels: without this row they sum to less than 100 %
        numbers += f"<tr><td>no data</td><td>{nodata:.1%}</td></tr>"
    if metrics is not None:  # scored against labels_dir: each image's own score, where only the overall was
        numbers += _label_score(str(row["path"]), metrics)
    try:  # a panorama's card takes a whole row: in a 22em card it was a strip a few dozen pixels high
        classes = status + (" panorama" if is_panorama(float(row["width"]), float(row["height"])) else "")
    except (KeyError, TypeError, ValueError):
        classes = status
    return (
        f'<figure class="{html.escape(classes)}"><a href="{overlay}"><img src="{shown}" loading="lazy" '
        f'alt="{name}"></a><figcaption><b>{name}</b> ({_num(row.get("width"), ".0f")} x '
        f"{_num(row.get('height'), '.0f')} px, {html.escape(status)})<table>{numbers}"
        f"<tr><td>contacts</td><td>{_num(row.get('n_contacts'), '.0f')}, "
        f"{_num(row.get('contact_length_px'), '.0f')} px</td></tr></table>"
        f'<a href="{mask}">mask</a> · <a href="{contact}">contact</a>{said}</figcaption></figure>'
    )


def render_gallery(
    rows: Sequence[Mapping[str, Any]],
    title: str,
    summary: str,
    reports: Sequence[str] = (),
    palette: Sequence[Sequence[int]] = PALETTE,
    thumbnails: AbstractSet[str] = frozenset(),
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """The HTML text of the gallery.

    Args:
        rows: Manifest rows (keys of :data:`marsunits.inference.writers.MANIFEST_FIELDS`).
        title: Page title (escaped here).
        summary: One paragraph of plain text shown above the images (escaped here).
        reports: File names, relative to the page, of the run's other outputs (manifest, summary, metrics,
            contact maps), linked above the images.
        palette: The class colours of the key: those the overlays were drawn in (the model's palette).
        thumbnails: The ``path`` of each row whose ``<stem>.thumb.jpg`` exists: its card shows that, the
            others their full-size overlay (every card links to its overlay).
        metrics: The run's scores against labels (``metrics.json``, keyed by the rows' ``path``), or None:
            each card then says its image's mIoU and pixel accuracy, or that it has no label or one that
            could not be scored.
    """
    key = "".join(
        f'<span style="background:rgb{tuple(rgb)}"></span>{html.escape(n)}'
        for n, rgb in zip(CLASS_NAMES, palette, strict=True)
    )
    cards = "\n".join(_card(r, thumbnails, metrics) for r in rows)
    links = " · ".join(f'<a href="{quote(name)}">{html.escape(name)}</a>' for name in reports)
    # A name that is not UTF-8 is shown with \xNN for its other bytes (links hold them as %E9): its raw
    # bytes made the page invalid UTF-8.
    return printable(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><p class="summary">{html.escape(summary)}</p>'
        + (f'<p class="reports">Reports: {links}</p>' if links else "")
        + f'<p class="key">Units:{key} · contact lines: white = low confidence, red = high.</p>'
        f'<div class="grid">\n{cards}\n</div></body></html>\n'
    )

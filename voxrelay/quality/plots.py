"""PNG charts of an evaluation report: WER per file, and reference versus detected speech per labelled file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from voxrelay.errors import MissingDependency


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise MissingDependency("--plots", "matplotlib", "eval") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)


def wer_chart(report: dict[str, Any], path: Path) -> Path | None:
    """Horizontal bars: recognizer-alone and end-to-end WER of each file (headline languages)."""
    rows = [f for f in report["per_file"] if f["asr_wer"] is not None or f["e2e_wer"] is not None]
    if not rows:
        return None
    plt = _pyplot()
    height = 1.2 + 0.32 * len(rows)
    fig, ax = plt.subplots(figsize=(9, height), layout="constrained")
    ys = list(range(len(rows)))
    asr = [100 * (f["asr_wer"] or 0.0) for f in rows]
    e2e = [100 * (f["e2e_wer"] or 0.0) for f in rows]
    ax.barh([y - 0.2 for y in ys], asr, height=0.4, label="recognizer alone", color="#4c72b0")
    ax.barh([y + 0.2 for y in ys], e2e, height=0.4, label="end to end (VAD segments)", color="#dd8452")
    ax.set_yticks(ys, [f["audio"] for f in rows], fontsize=8)
    ax.invert_yaxis()
    limit = 100.0
    ax.set_xlim(0, limit * 1.08)
    for y, a, e in zip(ys, asr, e2e, strict=True):  # bars cut at the limit show their value
        for offset, v in ((-0.2, a), (0.2, e)):
            if v > limit:
                ax.text(limit * 1.07, y + offset, f"{v:.0f}%", va="center", ha="right", fontsize=7, color="white")
    ax.set_xlabel("WER (%)")
    asr_all, e2e_all = report["asr"]["wer"], report["e2e"]["wer"]
    title = "WER per file"
    if asr_all is not None and e2e_all is not None:
        title += f" — overall: alone {100 * asr_all:.1f}%, end to end {100 * e2e_all:.1f}%"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def timeline_chart(entry: dict[str, Any], path: Path) -> Path:
    """Two lanes over the file's time: labelled speech and the segments the VAD sent."""
    plt = _pyplot()
    duration = max(entry["duration_s"], 1e-3)
    fig, ax = plt.subplots(figsize=(min(24, max(8, duration / 6)), 2.2), layout="constrained")
    reference = [(s, e - s) for s, e in entry["speech"] or []]
    detected = [(s, e - s) for s, e in entry["segments"]]
    ax.broken_barh(reference, (10, 8), facecolors="#55a868", label="labelled speech")
    ax.broken_barh(detected, (0, 8), facecolors="#4c72b0", label="segments sent")
    ax.set_yticks([4, 14], ["VAD", "reference"])
    ax.set_xlim(0, duration)
    ax.set_ylim(-1, 19)
    ax.set_xlabel("seconds")
    vad = entry["vad"] or {}
    f1 = vad.get("f1")
    scores = (
        f"P {vad['precision']:.2f}  R {vad['recall']:.2f}  F1 {f1:.2f}"
        if f1 is not None and vad.get("precision") is not None and vad.get("recall") is not None
        else "no score"
    )
    ax.set_title(f"{entry['audio']}: {scores}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(report: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write every chart into ``folder`` (created); returns the files written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    chart = wer_chart(report, out / "wer_per_file.png")
    if chart is not None:
        written.append(chart)
    for entry in report["per_file"]:
        if entry["speech"] is not None and entry["error"] is None:
            written.append(timeline_chart(entry, out / f"vad_timeline_{_stem(entry['audio'])}.png"))
    return written

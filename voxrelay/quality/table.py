"""The readable summary of an evaluation report, printed to stdout."""

from __future__ import annotations

from typing import Any, TextIO

from rich.console import Console
from rich.table import Table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def summary_lines(report: dict[str, Any]) -> list[str]:
    vad, asr, e2e, att, lat = (report[k] for k in ("vad", "asr", "e2e", "attribution", "latency"))
    model = report.get("model") or {}
    vad_name = (report.get("vad_settings") or {}).get("vad")
    lines = [
        f"model {model.get('name', '?')} ({model.get('backend', '?')}), vad {vad_name}, "
        f"pace {report.get('pace') or 'as fast as possible'}",
        f"VAD   precision {_num(vad['precision'])}  recall {_num(vad['recall'])}  F1 {_num(vad['f1'])}  "
        f"({vad['files']} labelled files, {vad['regions']} regions, {vad['missed_regions']} missed, "
        f"{_num(vad['segments_per_region'], '.2f')} segments/region, "
        f"{_num(vad['regions_per_segment'], '.2f')} regions/segment, "
        f"clipped onset {_num(vad['onset_clip_ms']['mean'], '.0f')} ms / offset "
        f"{_num(vad['offset_clip_ms']['mean'], '.0f')} ms, {vad['false_alarm_segments']} false-alarm segments, "
        f"collar {vad['collar_s']:g} s)",
        f"ASR   WER {_pct(asr['wer'])}  recognizer alone on whole utterances "
        f"({asr['utterances']} utterances, {asr['reference_words']} words; {asr['headline']})",
        f"E2E   WER {_pct(e2e['wer'])}  through VAD, segmenter and uplink "
        f"({_signed_points(e2e['wer'], asr['wer'])} vs recognizer alone)",
        f"      {att['e2e_errors']} end-to-end errors = {att['vad_errors']} VAD (words dropped or clipped) + "
        f"{att['recognizer_errors']} recognizer; the recognizer alone made {att['asr_errors']} "
        f"(segmentation effect {att['segmentation_effect']:+d}); {att['dropped_words']} reference words dropped, "
        f"{att['clipped_words']} clipped",
        f"LAT   p50 {_num(lat['p50_s'], '.2f')} s  p95 {_num(lat['p95_s'], '.2f')} s  end of speech (segment close) "
        f"to result, {lat['segments']} segments; mean by stage: "
        + ", ".join(f"{k} {_num(v['mean_s'], '.3f')} s" for k, v in lat["stages"].items()),
    ]
    confidence = report.get("confidence") or {}
    signals = confidence.get("signals")
    if signals:
        lines.append(
            "CONF  "
            + ", ".join(
                f"{name} rho {_num(v['spearman_rho_with_wer'], '.2f')} AUROC {_num(v['auroc_any_error'], '.2f')}"
                for name, v in signals.items()
            )
            + f" ({confidence['utterances']} utterances, vs per-utterance WER / any error)"
        )
        loo = confidence.get("leave_one_out") or {}
        lines.append(
            f"      calibrated estimate: WER {_pct(confidence['estimated_wer'])} vs measured "
            f"{_pct(confidence['pooled_wer'])}; held out (leave-one-out) {_pct(loo.get('estimated_wer'))}, "
            f"mean absolute error per utterance {_num(loo.get('mean_absolute_error'), '.3f')}"
        )
    elif confidence:
        lines.append(f"CONF  {confidence.get('note')}")
    for lang, figures in asr["by_language"].items():
        lines.append(
            f"      {lang}: ASR {_pct(figures['wer'])}, E2E {_pct(e2e['by_language'][lang]['wer'])} "
            f"({figures['utterances']} utterances, {figures['reference_words']} words)"
        )
    return lines


def _signed_points(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{100 * (a - b):+.1f} points"


def file_table(report: dict[str, Any]) -> Table:
    table = Table(title="per file", title_justify="left", show_edge=False, pad_edge=False)
    for name, justify in (
        ("file", "left"),
        ("lang", "left"),
        ("segs", "right"),
        ("VAD P", "right"),
        ("VAD R", "right"),
        ("VAD F1", "right"),
        ("ASR WER", "right"),
        ("E2E WER", "right"),
        ("VAD err", "right"),
        ("p50 s", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for f in report["per_file"]:
        utterances = f["utterances"]
        langs = sorted({u["language"] for u in utterances})
        vad = f["vad"] or {}
        vad_errors = sum((u["attribution"] or {}).get("vad_errors", 0) for u in utterances)
        table.add_row(
            f["audio"] + (f"  ({f['error']})" if f["error"] else ""),
            ",".join(langs) if len(langs) < 4 else "mixed",
            str(len(f["segments"])),
            _num(vad.get("precision"), ".2f"),
            _num(vad.get("recall"), ".2f"),
            _num(vad.get("f1"), ".2f"),
            _pct(f["asr_wer"]),
            _pct(f["e2e_wer"]),
            str(vad_errors) if utterances else "-",
            _num(f["latency"]["p50_s"], ".2f"),
        )
    return table


def print_report(report: dict[str, Any], out: TextIO) -> None:
    console = Console(file=out, width=160, highlight=False, soft_wrap=True)
    for line in summary_lines(report):
        console.print(line, markup=False)
    console.print()
    console.print(file_table(report))

"""Quality evaluation: WER, VAD scoring, reports (``voxrelay eval``)."""

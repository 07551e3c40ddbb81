"""Watching the pipeline in production: drift detection, alert rules and dashboards.

- :mod:`.features`: what is measured on each segment (inputs: duration, speech ratio, level, clipping,
  SNR, bandwidth, VAD probability mass; outputs: Whisper's confidence signals, words per second, empty,
  language, likely hallucination, repeat);
- :mod:`.profile`: the versioned reference profile of a model deployment (``voxrelay profile``);
- :mod:`.detector` and :mod:`.monitor`: two windows per feature scored against the reference off the
  request path (KS, Wasserstein, PSI), exported as ``voxrelay_drift_score`` / ``voxrelay_drift_alarm``;
- :mod:`.thresholds` and :mod:`.alerts`: the thresholds file and the Prometheus alert rules made from it;
- :mod:`.calibration`: the label-free WER estimate calibrated by ``voxrelay eval``;
- :mod:`.grafana` and :mod:`.live`: the Grafana dashboard and the built-in live page.
"""

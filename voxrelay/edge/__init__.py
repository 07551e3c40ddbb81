"""The edge agent: capture → VAD and segmentation → link to the recognizer → sinks. Light: no torch, no CTranslate2.

One sub-package per stage: :mod:`~voxrelay.edge.capture` (files and the microphone),
:mod:`~voxrelay.edge.vad` (detectors, voicing gate, segmenter), :mod:`~voxrelay.edge.link` (channel,
uplink, spool). Beside them: ``events`` and ``results`` (the data every stage passes on), ``agent``
(one session: source → VAD → segmenter → link → sinks), ``sinks``, ``metrics``, and the ``transcribe``
and ``listen`` commands. The edge imports :mod:`voxrelay.protos` and never :mod:`voxrelay.cloud`.
"""

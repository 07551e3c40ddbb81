"""Voice activity and segmentation: which frames are speech, and where segments open and close.

``detectors`` holds the VADs (webrtc with its ``voicing`` gate, silero on onnxruntime); ``segmenter``
is the pure state machine over per-frame ``(is_speech, energy)`` that decides onsets, endpoints and
splits; ``speech`` owns the audio and turns the segmenter's actions into segment events. May import
``voxrelay.edge.events`` and ``voxrelay.errors``; nothing of capture or the link.
"""

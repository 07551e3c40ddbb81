"""The edge half: sources, VAD, segmenter, uplink and sinks. Light: no torch, no CTranslate2."""

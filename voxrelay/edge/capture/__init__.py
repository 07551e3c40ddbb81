"""Audio capture: sources that yield 16 kHz mono blocks (:class:`~voxrelay.edge.events.AudioBlock`).

``files`` reads audio files (WAV in any layout, FLAC, Ogg, MP3, and with PyAV whatever FFmpeg decodes;
the decoders are in ``decoders``), resampled with soxr, paced or as fast as possible;
``mic`` captures a live input device with sounddevice. May import ``voxrelay.edge.events`` and
``voxrelay.errors``; nothing of the other stages.
"""

"""Audio capture: sources that yield 16 kHz mono blocks (:class:`~voxrelay.edge.events.AudioBlock`).

``files`` reads audio files (any WAV layout, resampled with soxr), paced or as fast as possible;
``mic`` captures a live input device with sounddevice. May import ``voxrelay.edge.events`` and
``voxrelay.errors``; nothing of the other stages.
"""

"""``voxrelay batch``: folders of recordings transcribed offline, resumably, several files in flight.

``inputs`` finds the files and where each output goes; ``run`` plans and runs the batch over the
edge's public pieces (source, agent session, uplink, sinks); ``progress`` reports it (a rich bar or
log lines); ``summary`` keeps ``summary.json`` and writes each output atomically. Imports the edge,
never the cloud (the embedded recognizer is started by the CLI).
"""

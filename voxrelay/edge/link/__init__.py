"""The link to the recognizer: channel (TLS, tokens), uplink, one Stream call, spool, wire messages, metrics.

``settings`` holds what the link modules share and imports none of them; ``channel`` opens and
checks the connection; ``uplink`` streams sessions through the ``spool`` (with its ``records``)
across reconnects, one ``streamcall`` at a time; ``messages`` converts to and from the protobuf
contract (the only place here that knows it); ``metrics`` reads the link's counters at scrape time.
May import ``voxrelay.edge.events``, ``voxrelay.edge.results`` and ``voxrelay.protos``.
"""

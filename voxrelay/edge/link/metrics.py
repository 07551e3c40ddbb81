"""Prometheus metrics of the store-and-forward link: spool depth, age and drops; reconnects and refusals.

The spool and the uplink keep their own counters (:class:`~voxrelay.edge.link.spool.Spool` properties,
:class:`~voxrelay.edge.link.streamcall.UplinkStats`); this collector reads them at scrape time, so nothing
on the hot path touches Prometheus. After the spool is closed, its values at closing are reported.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voxrelay.edge.link.spool import Spool
from voxrelay.edge.link.streamcall import UplinkStats


class LinkCollector(Collector):
    def __init__(self, spool: Spool, stats: UplinkStats) -> None:
        self.spool = spool
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        depth, size, age = self.spool.depth, self.spool.pending_bytes, self.spool.oldest_age_seconds
        yield GaugeMetricFamily(
            "voxrelay_edge_spool_segments", "Segments in the spool waiting for their result", value=depth
        )
        yield GaugeMetricFamily("voxrelay_edge_spool_bytes", "Audio bytes held in the spool", value=size)
        yield GaugeMetricFamily(
            "voxrelay_edge_spool_oldest_age_seconds", "Age of the oldest segment in the spool (0 if empty)", value=age
        )
        yield CounterMetricFamily(
            "voxrelay_edge_spool_dropped_segments",
            "Segments the spool dropped because it was full or they were too old",
            value=self.spool.dropped_segments,
        )
        yield CounterMetricFamily(
            "voxrelay_edge_spool_dropped_bytes", "Audio bytes of dropped segments", value=self.spool.dropped_bytes
        )
        yield GaugeMetricFamily(
            "voxrelay_edge_spool_in_memory",
            "1 while the spool runs in memory because its directory's disk is full, failing or unwritable",
            value=1 if self.spool.in_memory_fallback else 0,
        )
        yield CounterMetricFamily(
            "voxrelay_edge_spool_fallbacks",
            "Times the spool moved into memory because of disk trouble",
            value=self.spool.fallbacks,
        )
        yield CounterMetricFamily(
            "voxrelay_edge_spool_damaged",
            "Damaged spool databases moved aside, and spooled segments whose audio failed its checksum",
            value=self.spool.damaged,
        )
        yield CounterMetricFamily(
            "voxrelay_edge_reconnects",
            "Streams to the recognizer that broke and were reopened",
            value=self.stats.reconnects,
        )
        yield CounterMetricFamily(
            "voxrelay_edge_resent_segments",
            "Segments sent again after a reconnect or restart",
            value=self.stats.resent_segments,
        )
        yield CounterMetricFamily(
            "voxrelay_edge_pauses_sent",
            "Pauses in open segments reported to the recognizer, which may recognise the segment so far",
            value=self.stats.pauses,
        )
        refusals = CounterMetricFamily(
            "voxrelay_edge_stream_failures", "Broken or refused streams, by gRPC status", labels=["code"]
        )
        for code, count in sorted(self.stats.refusals.items()):
            refusals.add_metric([code], count)
        yield refusals


def watch_link(registry: CollectorRegistry, spool: Spool, stats: UplinkStats) -> LinkCollector:
    collector = LinkCollector(spool, stats)
    registry.register(collector)
    return collector

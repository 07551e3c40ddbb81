"""The review queue's figures as Prometheus metrics, read from the queue at scrape time.

- ``voxrelay_review_wer{deployment}``: the WER of the model's text against what people accepted or
  typed, over the last reviewed items (500 per deployment): the live WER, with labels made by people;
- ``voxrelay_review_redo_ratio{deployment}``: the share of reviewed results people had to redo (correct);
- ``voxrelay_review_items{deployment,status}``: items pending, accepted and corrected (within retention).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voxrelay.errors import VoxrelayError
from voxrelay.review.queue import ReviewQueue

log = logging.getLogger(__name__)


class ReviewCollector(Collector):
    def __init__(self, queue: Callable[[], ReviewQueue | None]) -> None:
        self.queue = queue

    def describe(self) -> list[Metric]:
        return []  # read at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        wer = GaugeMetricFamily(
            "voxrelay_review_wer",
            "WER of the model's text against the reviewed text, last reviewed items per deployment",
            labels=["deployment"],
        )
        redo = GaugeMetricFamily(
            "voxrelay_review_redo_ratio",
            "Share of reviewed results that people corrected (had to redo)",
            labels=["deployment"],
        )
        items = GaugeMetricFamily(
            "voxrelay_review_items", "Review items by deployment and status", labels=["deployment", "status"]
        )
        queue = self.queue()
        if queue is not None:
            try:
                stats = queue.stats()
            except (VoxrelayError, Exception) as err:  # a scrape must not fail on a busy database
                log.warning("review metrics: %s", err)
                stats = []
            for s in stats:
                if s.wer is not None:
                    wer.add_metric([s.deployment], s.wer)
                if s.redo_ratio is not None:
                    redo.add_metric([s.deployment], s.redo_ratio)
                for status, n in (("pending", s.pending), ("accepted", s.accepted), ("corrected", s.corrected)):
                    items.add_metric([s.deployment, status], n)
        yield wer
        yield redo
        yield items

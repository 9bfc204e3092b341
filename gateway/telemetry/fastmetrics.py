"""Counters and histograms for the per-request hot path, exported through the app registry.

prometheus-client's children take a lock for every increment and every histogram bucket
(they may be shared with threads); the series here are touched only on the event loop, so
a child is plain numbers, read out when /metrics is scraped. The exposition is the same as
prometheus-client's own ``Counter`` and ``Histogram`` (``_total``, ``_bucket`` with ``le``,
``_sum``, ``_count``, and exemplars on buckets in OpenMetrics).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramChild:
    __slots__ = ("_bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.exemplars: list[Exemplar | None] = [None] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        index = bisect_left(self._bounds, amount)  # le is inclusive: the first bound >= amount
        self.counts[index] += 1
        self.sum += amount
        if exemplar is not None:
            self.exemplars[index] = Exemplar(exemplar, amount, time.time())


ChildT = TypeVar("ChildT")


class _Family(Generic[ChildT]):
    """A labelled family: ``labels(*values)`` gives the child of those values, made once."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], ChildT] = {}
        registry.register(self)

    def labels(self, *values: str) -> ChildT:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}")
            child = self._children[values] = self._new_child()
        return child

    def _new_child(self) -> ChildT:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError


class FastCounter(_Family[CounterChild]):
    """A labelled counter: ``labels(*values).inc()``, as prometheus-client's."""

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class FastHistogram(_Family[HistogramChild]):
    """A labelled histogram: ``labels(*values).observe(seconds, exemplar)``."""

    def __init__(  # prometheus-client's own parameters
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        *,
        buckets: Sequence[float],
    ) -> None:
        self._bounds = tuple(float(bound) for bound in buckets)
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self._bounds)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        bounds = [*map(floatToGoString, self._bounds), "+Inf"]
        for values, child in list(self._children.items()):
            cumulative = 0
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            for bound, count, exemplar in zip(bounds, child.counts, child.exemplars, strict=True):
                cumulative += count
                if exemplar is None:
                    buckets.append((bound, cumulative))
                else:
                    buckets.append((bound, cumulative, exemplar))
            family.add_metric(values, buckets, child.sum)
        yield family

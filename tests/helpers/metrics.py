"""Read one sample out of a Prometheus text exposition."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of sample ``name`` with exactly ``labels``; None when there is none.

    A ``network`` label not asked for is any network's: a one-network gateway's series."""
    for family in text_string_to_metric_families(text):
        for each in family.samples:
            found = each.labels
            if "network" not in labels:
                found = {key: value for key, value in found.items() if key != "network"}
            if each.name == name and found == labels:
                return float(each.value)
    return None

"""The one parser of what ``/metrics`` serves, in either format: samples by name and labels."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from prometheus_client.core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

OPENMETRICS_TYPE = "application/openmetrics-text"


def families(text: str, openmetrics: bool) -> list[Metric]:
    """The metric families of an exposition, read by prometheus_client's parser of its
    format (OpenMetrics or the Prometheus text format): the tests' one parser."""
    if openmetrics:
        return list(parse_om(text))  # type: ignore[no-untyped-call]
    return list(parse_text(text))


def is_openmetrics(content_type: str) -> bool:
    """Whether a response's ``Content-Type`` is OpenMetrics."""
    return content_type.startswith(OPENMETRICS_TYPE)


@dataclass(frozen=True)
class Exposition:
    """A parsed ``/metrics`` page: samples by name and labels."""

    text: str
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str, openmetrics: bool = False) -> Exposition:
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in families(text, openmetrics):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in samples, f"duplicate sample {key}"
                samples[key] = sample.value
        return cls(text, samples)

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def by_label(self, name: str, label: str, **match: str) -> dict[str, float]:
        """``{label value: sample value}`` of every *name* sample whose labels include *match*."""
        return {key[0]: value for key, value in self.by_labels(name, (label,), **match).items()}

    def by_labels(self, name: str, labels: tuple[str, ...],
                  **match: str) -> dict[tuple[str, ...], float]:
        """``{(label values): sample value}`` of every *name* sample whose labels include
        *match*, keyed by the values of *labels*."""
        out: dict[tuple[str, ...], float] = {}
        for (sample, sample_labels), value in self.samples.items():
            if sample != name:
                continue
            found = dict(sample_labels)
            if all(found.get(k) == v for k, v in match.items()) and \
                    all(label in found for label in labels):
                out[tuple(found[label] for label in labels)] = value
        return out

    def iter_names(self) -> Iterator[str]:
        return iter({name for name, _ in self.samples})


def moment(seconds: float) -> datetime:
    """A timestamp from the exposition as an aware UTC datetime (microseconds kept)."""
    return datetime.fromtimestamp(seconds, timezone.utc)

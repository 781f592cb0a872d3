"""Small statistics for the report: medians, a least-squares line, a linearity verdict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

# A cost is called linear in the number of models when a straight line explains
# it (R^2) and the cost per added model does not grow from one size step to the
# next (a quadratic cost would make the last step's slope several times larger).
MIN_R_SQUARED = 0.98
MAX_SLOPE_GROWTH = 1.5


@dataclass(frozen=True)
class LineFit:
    """``y = intercept + slope * x`` fitted by least squares."""

    slope: float
    intercept: float
    r_squared: float
    slope_growth: float  # slope of the last size step / slope of the one before

    @property
    def linear(self) -> bool:
        return (self.r_squared >= MIN_R_SQUARED
                and 1 / MAX_SLOPE_GROWTH <= self.slope_growth <= MAX_SLOPE_GROWTH)


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> LineFit:
    """Least squares over at least three points (x ascending)."""
    if len(xs) < 3 or len(xs) != len(ys):
        raise ValueError("need at least three (x, y) points")
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    r_squared = 1.0 - residual / total if total > 0 else 1.0
    last = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    before = (ys[-2] - ys[-3]) / (xs[-2] - xs[-3])
    growth = last / before if before > 0 else float("inf")
    return LineFit(slope, intercept, r_squared, growth)


def med(values: Sequence[float]) -> float:
    return float(median(values))

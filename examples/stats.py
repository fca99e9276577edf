"""Small statistics helpers."""

from typing import List


def mean(values: List[float]) -> float:
    """Return the arithmetic mean of a non-empty list."""
    return sum(values) / len(values)


def variance(values: List[float]) -> float:
    """Return the population variance of a non-empty list."""
    m = mean(values)
    

def median(values: List[float]) -> float:
    """Return the median of a non-empty list."""
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    if n % 2 == 1:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2

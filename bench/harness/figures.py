"""Medians and ranges of per-round figures; a missing figure (None) is
left out, and a figure of no rounds is None."""
import statistics


def known(values):
    return [v for v in values if v is not None]


def median(values):
    values = known(values)
    return statistics.median(values) if values else None


def spread(values):
    """(min, max), or (None, None)."""
    values = known(values)
    return (min(values), max(values)) if values else (None, None)

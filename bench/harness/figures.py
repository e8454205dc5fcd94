"""Medians and ranges of per-round figures; a missing figure (None) is
left out, and a figure of no rounds is None."""
import random
import statistics
from dataclasses import dataclass


def known(values):
    return [v for v in values if v is not None]


def median(values):
    values = known(values)
    return statistics.median(values) if values else None


def spread(values):
    """(min, max), or (None, None)."""
    values = known(values)
    return (min(values), max(values)) if values else (None, None)


def add_histograms(histograms):
    """Latency histograms (each a list of [upper edge, count], as the load
    generator prints its non-empty buckets) added together: (edge, count)
    pairs in edge order."""
    counts = {}
    for buckets in histograms:
        for edge, n in buckets or []:
            counts[edge] = counts.get(edge, 0) + n
    return sorted(counts.items())


def histogram_quantile(buckets, count, maximum, q):
    """The histogram's rule (bench/common/histogram.cc): the upper edge of
    the bucket holding rank q*count, capped at the maximum."""
    if count == 0:
        return 0
    rank = min(int(q * count), count - 1)
    seen = 0
    for edge, n in buckets:
        seen += n
        if seen > rank:
            return min(edge, maximum)
    return maximum


def pooled_quantile(histograms, q):
    """The q-quantile of several latency histograms added together, by the
    generator's own rule (their edges are capped at its maximum already).
    None without a count."""
    buckets = add_histograms(histograms)
    count = sum(n for _, n in buckets)
    return histogram_quantile(buckets, count, buckets[-1][0], q) if count else None


def pooled_ratio(rounds, q, level=0.9, resamples=2000, seed=1):
    """(ratio, low, high): the pooled q-quantile of the first histograms of
    `rounds` (pairs of histograms, one round each, two scenarios) over that
    of the second, and its `level` bootstrap interval: the rounds drawn
    again with replacement, a round's pair together so that both keep the
    moment's noise they shared. Seeded: a report reads the same each time.
    None without two rounds."""
    if len(rounds) < 2:
        return None

    def ratio(chosen):
        a = pooled_quantile([r[0] for r in chosen], q)
        b = pooled_quantile([r[1] for r in chosen], q)
        return a / b if a and b else None

    point = ratio(rounds)
    if point is None:
        return None
    rng = random.Random(seed)
    draws = sorted(
        r
        for r in (ratio([rng.choice(rounds) for _ in rounds]) for _ in range(resamples))
        if r is not None
    )
    tail = (1 - level) / 2
    return point, draws[int(tail * (len(draws) - 1))], draws[int((1 - tail) * (len(draws) - 1))]


def rank_correlation(xs, ys):
    """Spearman's rank correlation of two equally long lists (ties share
    their mean rank), or None with fewer than three pairs or no spread."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None

    def ranks(values):
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / (sxx * syy) ** 0.5 if sxx and syy else None


@dataclass
class TailShape:
    """What the slowest connections of some samples are made of (each
    sample's generator keeps its slowest, bench/common/slowest.h)."""

    kept: int  # connections, all samples together
    handshake_us: float | None  # their median time to connect's completion
    after_us: float | None  # their median time from there to the first byte
    densest_share: float  # a sample's share in its densest window, median of samples
    top_backend_share: float  # the share of the backend most of them went to
    top_backend: str


def tail_shape(samples, window_us=50_000):
    """`samples`: (slowest, backend of each target index) pairs, `slowest`
    as the generator prints it: [start_us, handshake_us, latency_us,
    target] by start. A stall shows as a sample's slowest crowded into one
    window; one slow backend as most of them going to it."""
    handshakes, afters, densest, backends = [], [], [], {}
    kept = 0
    for slowest, backend_of in samples:
        if not slowest:
            continue
        kept += len(slowest)
        starts = [c[0] for c in slowest]
        best, lo = 0, 0
        for hi, start in enumerate(starts):  # starts are sorted
            while start - starts[lo] >= window_us:
                lo += 1
            best = max(best, hi - lo + 1)
        densest.append(best / len(slowest))
        for _, handshake, latency, target in slowest:
            if handshake:
                handshakes.append(handshake)
                afters.append(latency - handshake)
            name = backend_of[target] if target < len(backend_of) else "?"
            backends[name] = backends.get(name, 0) + 1
    if not kept:
        return None
    top = max(backends, key=backends.get)
    return TailShape(
        kept=kept,
        handshake_us=median(handshakes),
        after_us=median(afters),
        densest_share=statistics.median(densest),
        top_backend_share=backends[top] / kept,
        top_backend=top,
    )

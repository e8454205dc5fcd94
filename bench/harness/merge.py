"""Load split over several client namespaces, and their results put back
together as if one generator had run.

Each client namespace runs its own load_generator with a share of the load
(concurrency, rate, connection count, in-flight bound and threads divided as
evenly as integers allow). Their JSON summaries merge exactly: counts add up,
latency percentiles come from the summed histogram buckets (each generator
prints [upper_edge_ns, count] per non-empty bucket), not from averaging
percentiles.
"""

from figures import add_histograms, histogram_quantile

# Options whose value is a total to divide among the generators.
_SPLIT = ("--concurrency", "--rate", "--connections", "--max-in-flight", "--threads")


def share(args, clients, index):
    """`args` for generator `index` of `clients`: every divisible total cut
    into near-equal integer parts (at least 1 each)."""
    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a in _SPLIT:
            total = int(out[i + 1])
            part = total // clients + (1 if index < total % clients else 0)
            out[i + 1] = str(max(1, part))
    return out


def merge(gens):
    """One summary from several generators' summaries (a single one is
    returned as it is)."""
    if len(gens) == 1:
        return gens[0]
    g = dict(gens[0])
    for key in ("started", "finished", "completed", "rate_target", "concurrency", "threads"):
        g[key] = sum(x.get(key) or 0 for x in gens)
    g["elapsed_s"] = max(x["elapsed_s"] for x in gens)
    # Each generator ran for about the same time: rates add up.
    g["conn_per_s"] = sum(x["conn_per_s"] for x in gens)
    g["errors"] = {k: sum(x["errors"].get(k, 0) for x in gens) for k in gens[0]["errors"]}
    first = {}
    for x in gens:
        for k, v in x.get("first_errno", {}).items():
            first.setdefault(k, v)
    g["first_errno"] = first
    targets = []
    for i, t in enumerate(gens[0]["targets"]):
        merged = dict(t)
        for k in ("ok", "wrong", "failed"):
            merged[k] = sum(x["targets"][i][k] for x in gens)
        example = next(
            (x["targets"][i]["wrong_example"] for x in gens if "wrong_example" in x["targets"][i]),
            None,
        )
        if example is not None:
            merged["wrong_example"] = example
        targets.append(merged)
    g["targets"] = targets
    g["cpu_s"] = {k: sum(x["cpu_s"][k] for x in gens) for k in ("user", "sys")}
    g["cpu_us_per_conn"] = (
        (g["cpu_s"]["user"] + g["cpu_s"]["sys"]) * 1e6 / g["finished"] if g["finished"] else 0.0
    )

    buckets = add_histograms(x["buckets"] for x in gens)
    count = sum(n for _, n in buckets)
    maximum = max(x["latency_us"]["max"] for x in gens) * 1000
    mean = (
        sum(x["latency_us"]["mean"] * sum(n for _, n in x["buckets"]) for x in gens) / count
        if count
        else 0.0
    )
    lat = {
        name: histogram_quantile(buckets, count, maximum, q) / 1000
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))
    }
    lat["max"], lat["mean"] = maximum / 1000, mean
    g["latency_us"] = lat
    g["buckets"] = [[edge, n] for edge, n in buckets]
    cdf, seen = [], 0
    for edge, n in buckets:
        seen += n
        cdf.append([min(edge, maximum) / 1000, seen / count])
    g["cdf"] = cdf
    # Each generator's own slowest, put side by side (not re-ranked), their
    # starts moved from each one's start to the earliest one's (one clock).
    earliest = min(x.get("start_ns", 0) for x in gens)
    g["start_ns"] = earliest
    g["slowest"] = sorted(
        [c[0] + (x.get("start_ns", 0) - earliest) // 1000, *c[1:]]
        for x in gens
        for c in x.get("slowest", [])
    )
    g["generators"] = len(gens)
    return g

"""Reads a `netecho bench --hdr-log` file with the PyPI `hdrhistogram` package (`hdrh`), an
HdrHistogram implementation independent of the Rust crate that wrote it, and prints one JSON
object: for each tag, the total count, the max, every recorded value with its count (the values
being the highest equivalent of their bucket, as the Rust crate reports them), and percentiles.

Percentiles are taken at rank ceil(q * count), as the Rust crate does; the package's own
get_value_at_percentile rounds the rank to nearest instead (int(q * count + 0.5)), which can
give the next bucket for the same histogram. Both are printed ("p" and "p_own")."""

import json
import math
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

LOWEST, HIGHEST, DIGITS = 1, 3_600_000_000_000, 3


def main(path):
    reader = HistogramLogReader(path, HdrHistogram(LOWEST, HIGHEST, DIGITS))
    tags = {}
    while True:
        interval = reader.get_next_interval_histogram()
        if interval is None:
            break
        tag = interval.get_tag() or ""
        tags.setdefault(tag, HdrHistogram(LOWEST, HIGHEST, DIGITS)).add(interval)
    out = {}
    for tag, histogram in tags.items():
        recorded = [
            (histogram.get_highest_equivalent_value(item.value_iterated_to),
             item.count_at_value_iterated_to)
            for item in histogram.get_recorded_iterator()
        ]
        count = histogram.get_total_count()
        percentiles = {}
        for q in ("0.5", "0.9", "0.99", "0.999"):
            rank = max(1, math.ceil(float(q) * count))
            seen = 0
            for value, n in recorded:
                seen += n
                if seen >= rank:
                    percentiles[q] = value
                    break
        out[tag] = {
            "count": count,
            "max": histogram.get_max_value(),
            "recorded": recorded,
            "p": percentiles,
            "p_own": {q: histogram.get_value_at_percentile(float(q) * 100) for q in percentiles},
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])

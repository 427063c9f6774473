"""Demo corpora for the quick start, tests and benchmarks."""

"""Helper processes the benchmarks start (targets and clients); each is run as a script."""

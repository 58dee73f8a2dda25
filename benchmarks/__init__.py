"""memtui benchmarks: each one measures memtui against a named peer in the same run and prints a
ratio table with the target it is judged against. Run ``python -m benchmarks`` from the repo root
(``python -m benchmarks overhead`` for one, ``--quick`` for a shorter run)."""

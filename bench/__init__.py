"""AMB's benchmarks: the bus beside a raw driver or baseline, measured in one run (``nox -s bench``)."""

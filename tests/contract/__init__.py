"""Contract suites: one per seam (``ecrcred.seams``), each run against every implementation of
that seam, the real ones and the fakes the unit tests use, so that a fake cannot drift from
what it stands in for."""

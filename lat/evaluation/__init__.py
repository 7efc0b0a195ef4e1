"""Generation, judges, safety and utility benchmarks."""

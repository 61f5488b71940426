"""One trial: build, train over seeds, measure and save a candidate (pipeline)."""

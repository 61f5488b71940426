"""One trial: its configuration as a search hands it to a worker (config), and the pipeline
that builds, measures, trains over seeds and saves a candidate (pipeline)."""

"""One trial: its configuration as a search hands it to a worker (config), its network as it is
trained and shipped (build), and the pipeline that measures, trains over seeds and saves a
candidate (pipeline)."""

"""One trial: its configuration as a search hands it to a worker (config), its network as it is
trained and shipped (build), the pipeline that measures, trains over seeds and saves a
candidate (pipeline), and the store of finished trainings it reuses instead of training again
(reuse)."""

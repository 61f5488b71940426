"""Running a search: the driver (runner: run_search and its options), the bridge between Ray
Tune and the study (searcher), early stopping (scheduler), the trial on a Ray worker (worker),
run records and recovery (runs), the pretrained baselines (references) and the confirmation of
a front over new seeds (confirm)."""

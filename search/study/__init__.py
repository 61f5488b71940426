"""The study: what a trial stores (record), what the trials add up to (front: the objective
point, dominance, the Pareto front, presets dominated, hypervolume, the headline) and the
Optuna storage they live in (storage: SQL, locks, opening a study)."""

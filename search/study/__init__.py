"""The study: what a trial stores (record) and the Optuna storage it lives in (storage)."""

"""MLflow: the store, runs and lineage, the pyfunc model, the registry and its aliases."""

"""The demos and the harness that runs the kaito operator against the simulated cluster (the only kaito importers)."""

"""The controllers a real control plane runs beside the API server, simulated in-process: pods actually run."""

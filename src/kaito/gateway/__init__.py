"""`kaito gateway`: one endpoint per InferenceSet that balances, streams, retries and holds requests."""

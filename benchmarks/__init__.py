"""The benchmark of issue 3: agentkeep against raw drivers and peer libraries (``python -m benchmarks``)."""

"""Load tests and gRPC benchmarks of the dispatch-core service (see README.md)."""

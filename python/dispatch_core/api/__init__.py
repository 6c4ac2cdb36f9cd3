"""The gRPC face of dispatch-core: request validation, the servicer and status mapping."""

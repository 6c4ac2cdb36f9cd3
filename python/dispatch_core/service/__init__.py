"""Transport: the gRPC servicer (bytes in, bytes out), refusals as gRPC statuses, the
metrics interceptor, and the validation of what Python still answers itself."""

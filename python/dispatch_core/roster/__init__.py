"""Duty management from files: `dispatch-core roster import FILE` (people with skills and
their shifts, from CSV, sent to a running server over gRPC)."""

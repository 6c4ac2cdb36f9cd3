"""`dispatch-core simulate`: a seeded discrete-event simulation that drives the real engine
in-process to compare dispatch policies on identical demand.

- `demand`: the calls of a run, drawn from a scenario (or read from a CSV of real calls);
- `world`: the event loop, the units' true positions and motion, and the engine driven
  through `DispatchCore.execute` with simulated time (no gRPC, no sleeping);
- `policies`: who decides which unit goes where (closest-idle, the engine's greedy ranking);
- `report`: outcome figures per grade, as JSON, Markdown and plots.

Determinism: every random draw comes from generators seeded by `--seed`, the engine reads
no clock, and ids come from counters, so the same seed gives the same report byte for byte.
"""

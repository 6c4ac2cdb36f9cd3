"""`dispatch-core loadtest`: open-loop surge scenarios and per-RPC capacity, shipped in the wheel.

Modules:
- `scenario`: what a scenario file declares (the shipped ones are in `scenarios/`).
- `generator`: the open-loop generator and the dispatch workload it drives.
- `capacity`: the sustained rate of each hot RPC at a p99 limit (`--capacity`).
- `h2load`: the C HTTP/2 generator that capacity mode uses for read RPCs where installed.
- `target`: the server under test, started here or given with `--target`, checked first.
- `seeding`: registering a fleet over gRPC.
- `procs`: CPU and memory of processes and of the machine, from /proc.
- `report`: report.json, report.md and the plots.
- `main`: the command line.
"""

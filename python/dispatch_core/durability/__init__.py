"""Durability: the command pipeline, the journal backends, recovery and snapshots.

- `pipeline`: execute a command in the core under the writer lock, journal it, reply once
  durable; restore from snapshot + journal;
- `journal`: the write-ahead journal (SQLite, PostgreSQL, memory) and its contract;
- `recovery`: opening a journal and rebuilding a pipeline from it, with clear refusals;
- `snapshotter`: periodic snapshots in a background thread;
- `records`: journal entries as WatchEvents messages and one-line summaries.
"""

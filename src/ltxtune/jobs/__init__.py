"""Jobs: a neutral queue (records, the `Store` interface and its SQLite backend), the worker that
runs jobs in child processes, output files, and delivery of the outbox. Which API a job came from
is only its `protocol` name and opaque `payload`: the views live in `ltxtune.protocols`.
Torch-free: training happens in the worker's child processes."""

"""Jobs: the store, the worker that runs jobs in child processes, output files, webhooks, and the
views of a job in each API flavour. Torch-free: training happens in the worker's child processes."""

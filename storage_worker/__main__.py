from chatkit.runtime import run
from storage_worker.service import serve

# A batch holds about three tracked containers per entry (the reply's lists, UUIDs) for its
# whole life; collecting every 700 allocations cost the worker a sixth of its CPU.
run("storage_worker", serve, young_gc_threshold=50_000)

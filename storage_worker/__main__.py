from chatkit.runtime import run
from storage_worker.service import serve

run("storage_worker", serve)

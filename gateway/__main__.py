import gc

from chatkit.runtime import configure_logging
from chatkit.settings import Settings
from gateway.server import build_server

settings = Settings.from_env()
configure_logging(settings, "gateway")
server = build_server(settings)
# As chatkit.runtime.run does for the services (uvicorn runs this process, not that function):
# everything built so far lives as long as the process, so keep it out of the collector's sight.
gc.freeze()
server.run()

import uvicorn

from chatkit.runtime import configure_logging
from chatkit.settings import Settings
from gateway.server import uvicorn_config

settings = Settings.from_env()
configure_logging(settings, "gateway")
uvicorn.Server(uvicorn_config(settings)).run()

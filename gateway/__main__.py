from chatkit.runtime import configure_logging
from chatkit.settings import Settings
from gateway.server import build_server

settings = Settings.from_env()
configure_logging(settings, "gateway")
build_server(settings).run()

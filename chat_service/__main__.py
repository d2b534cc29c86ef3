from chat_service.service import serve
from chatkit.runtime import run

run("chat_service", serve)

"""``python -m auth_service``: run the auth service until SIGINT/SIGTERM."""

from auth_service.service import serve
from chatkit.runtime import run

if __name__ == "__main__":
    run("auth_service", serve)

"""python-socketio with AsyncRedisManager, the way it is commonly deployed for chat: several
uvicorn servers (uvloop, httptools) sharing one Redis, each user in a room named by its id.

``python -m bench.sio_server --port P --redis URL``

A client connects with ``auth={"user": <id>}`` and joins room ``user:<id>``; the event
``msg`` ``{"to": <user>, "key": ...}`` is emitted as ``msg`` ``{"key": ...}`` to room
``user:<to>`` (through Redis, so whichever server holds that user delivers it), and the
sender's callback is answered once the emit returned.
"""

from __future__ import annotations

import argparse
from typing import Any

import socketio
import uvicorn

# As shipped, the manager's Redis client uses the library's default pool, and under this load
# its publishes queue up behind too few connections until messages are dropped; a pool this big
# never makes an emit wait for a connection, which is the fair comparison.
REDIS_MAX_CONNECTIONS = 1000


def create_app(redis_url: str) -> Any:
    manager = socketio.AsyncRedisManager(redis_url, redis_options={"max_connections": REDIS_MAX_CONNECTIONS})
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins=[])

    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> bool:
        if not auth or "user" not in auth:
            return False
        await sio.enter_room(sid, f"user:{int(auth['user'])}")
        return True

    async def msg(sid: str, data: dict[str, Any]) -> bool:
        await sio.emit("msg", {"key": data["key"]}, room=f"user:{int(data['to'])}")
        return True

    sio.on("connect", connect)
    sio.on("msg", msg)

    return socketio.ASGIApp(sio)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.redis), host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
        log_level="warning", access_log=False,
    )


if __name__ == "__main__":
    cli()

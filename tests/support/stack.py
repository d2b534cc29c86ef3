"""The stack under test, in this process: every service as an asyncio task, the gateways as
uvicorn servers on free ports, all on real Redis and PostgreSQL; and ``running``, one service
as a task for the length of a block."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from chat_client import ChatClient
from chatkit.settings import Settings
from devstack.embedded import free_port
from tests.support.polling import wait_until

ServeFn = Callable[[Settings], Coroutine[Any, Any, None]]

_instances = itertools.count(1)


def instance_settings(settings: Settings, name: str) -> Settings:
    # Replicas in one process still need their own consumer names.
    return settings.with_overrides(instance=f"{name}-{next(_instances)}")


@dataclass
class Stack:
    settings: Settings
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    servers: dict[str, uvicorn.Server] = field(default_factory=dict)
    gateway_urls: list[str] = field(default_factory=list)
    clients: list[ChatClient] = field(default_factory=list)

    def start_service(self, name: str, serve: ServeFn) -> None:
        task = asyncio.create_task(serve(instance_settings(self.settings, name)), name=name)
        self.tasks[name] = task

    async def stop_service(self, name: str) -> None:
        await cancel_and_wait(self.tasks.pop(name))

    async def start_gateway(self, name: str) -> str:
        from gateway.server import build_server

        port = free_port()
        settings = instance_settings(self.settings, name).with_overrides(port=port, log_level="warning")
        # The test's own event loop runs the server, so leave the loop choice to it.
        server = build_server(settings, loop="none")
        task = asyncio.create_task(server.serve(), name=name)
        self.servers[name] = server
        self.tasks[name] = task
        await wait_until(lambda: server.started or task.done(), what=f"gateway {name} to start")
        if not server.started:
            task.result()
            raise RuntimeError(f"gateway {name} stopped before it started")
        url = f"ws://127.0.0.1:{port}/ws"
        self.gateway_urls.append(url)
        return url

    async def stop_gateway(self, name: str) -> None:
        self.servers.pop(name).should_exit = True
        task = self.tasks.pop(name)
        try:
            await asyncio.wait_for(task, 10)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def client(self, gateway: int = 0) -> ChatClient:
        client = await ChatClient.connect(self.gateway_urls[gateway])
        self.clients.append(client)
        return client

    async def stop(self) -> None:
        """Close every client, then stop every gateway and service, whatever fails on the way."""
        async with contextlib.AsyncExitStack() as cleanup:
            for name in list(self.tasks):
                if name not in self.servers:
                    cleanup.push_async_callback(self.stop_service, name)
            for name in list(self.servers):
                cleanup.push_async_callback(self.stop_gateway, name)
            for client in self.clients:
                cleanup.push_async_callback(client.close)


async def start_stack(settings: Settings, *, gateways: int = 2, chat_replicas: int = 1) -> Stack:
    from auth_service.service import serve as serve_auth
    from chat_service.service import serve as serve_chat
    from storage_worker.service import serve as serve_storage

    stack = Stack(settings)
    try:
        stack.start_service("auth_service", serve_auth)
        for n in range(chat_replicas):
            stack.start_service(f"chat_service-{n + 1}", serve_chat)
        stack.start_service("storage_worker", serve_storage)
        for n in range(gateways):
            await stack.start_gateway(f"gateway-{n + 1}")
    except BaseException:
        # No fixture holds the stack yet: stop what did start, or its tasks outlive the test.
        await stack.stop()
        raise
    return stack


@contextlib.asynccontextmanager
async def running(
    serve: Callable[[Settings], Awaitable[None]], settings: Settings, name: str | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    """A service as a task (named ``name`` if given) for the block; cancelled at the end, and its
    failure (other than the cancellation) raised."""
    task = asyncio.create_task(_as_coroutine(serve(settings)), name=name)
    try:
        yield task
    finally:
        await cancel_and_wait(task)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to end, raising its failure if it failed otherwise. A
    cancellation of the waiting task itself (a test's time limit) is passed on, not swallowed
    with the task's own, so a service that will not stop cannot hold a test past its limit."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable

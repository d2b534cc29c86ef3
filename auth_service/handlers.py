"""What auth_service does with each client frame: register, login, auth, rename, logout."""

from __future__ import annotations

import logging

import asyncpg

from auth_service import users
from auth_service.passwords import Passwords
from auth_service.sessions import EVERY_SESSION, Sessions
from auth_service.tokens import BadToken, Session, Tokens
from chatkit import wire
from chatkit.dispatch import FrameTable, Route
from chatkit.envelopes import Request
from chatkit.errors import RequestError, Unavailable
from chatkit.service import Outbox

log = logging.getLogger(__name__)


class AuthHandler:
    """Holds what the handlers share; :meth:`handle` is the ``chatkit.service.Handler``."""

    def __init__(self, pool: asyncpg.Pool, passwords: Passwords, tokens: Tokens, sessions: Sessions) -> None:
        self.pool = pool
        self.passwords = passwords
        self.tokens = tokens
        self.sessions = sessions
        self.routes = FrameTable(
            "auth_service", wire.AuthFrame,
            Route(wire.Register, self.register),
            Route(wire.Login, self.login),
            Route(wire.Auth, self.auth),
            Route(wire.Rename, self.rename),
            Route(wire.Logout, self.logout),
        )

    async def handle(self, request: Request, outbox: Outbox) -> None:
        # The gateway routes only wire.AuthFrame here.
        frame = request.frame
        await self.routes.handler(frame)(frame, request, outbox)

    async def register(self, frame: wire.Register, request: Request, outbox: Outbox) -> None:
        # Registering does not log in: the client logs in next, like any other time.
        password_hash = await self.passwords.hash(frame.password)
        user = await users.create(self.pool, frame.username, frame.email, password_hash)
        outbox.reply(wire.Registered(user=user.info))

    async def login(self, frame: wire.Login, request: Request, outbox: Outbox) -> None:
        user = await users.by_username(self.pool, frame.username)
        if user is None:
            await self.passwords.verify_dummy(frame.password)
            raise _bad_credentials()
        if not await self.passwords.verify(user.password_hash, frame.password):
            raise _bad_credentials()
        if self.passwords.needs_rehash(user.password_hash):
            # The only moment the plain password is at hand to move to today's parameters.
            new_hash = await self.passwords.hash(frame.password)
            await users.set_password_hash(self.pool, user.id, new_hash)
        self._logged_in(user.ref, self.tokens.new_session(), outbox)

    async def auth(self, frame: wire.Auth, request: Request, outbox: Outbox) -> None:
        try:
            claims = self.tokens.verify(frame.token)
        except BadToken:
            raise RequestError("bad_token", "the token is invalid or expired; log in again") from None
        # Redis first: a logged-out token is refused without a database query.
        await self.sessions.check(claims.user_id, claims.session)
        user = await users.by_id(self.pool, claims.user_id)
        if user is None:
            raise RequestError("bad_token", "the token's user no longer exists")
        self._logged_in(user.ref, claims.session, outbox)

    async def logout(self, frame: wire.Logout, request: Request, outbox: Outbox) -> None:
        who = request.user
        if who is None:
            raise RequestError("unauthenticated", "log in first")
        if frame.everywhere:
            await self.sessions.end_all(who.id)
            ended = EVERY_SESSION
        elif request.session is None:
            raise RequestError("invalid", "everywhere: expected true, got false on a connection without a session")
        else:
            await self.sessions.end(who.id, request.session)
            ended = request.session
        outbox.reply(wire.LoggedOut(), logout=True)
        # The user's other connections in that session (or in any) are closed by their gateways.
        outbox.to_user(who.id, wire.LoggedOut(), skip_own=True, end_session=ended)

    async def rename(self, frame: wire.Rename, request: Request, outbox: Outbox) -> None:
        who = request.user
        if who is None:
            raise RequestError("unauthenticated", "log in first")
        user = await users.rename(self.pool, who.id, frame.username)
        if user is None:
            raise RequestError("no_such_user", "your account no longer exists")
        outbox.reply(wire.Renamed(user=user.ref), identity=user.ref)
        # The user's other connections learn the new name too (and their gateways rebind).
        outbox.to_user(user.id, wire.Renamed(user=user.ref), skip_own=True, identity=user.ref)
        # Every dialog peer's open connections too, so their windows show the new name. The
        # rename is done by now: a database that fails here costs the peers the event only.
        try:
            peers = await users.peers(self.pool, user.id)
        except Unavailable as exc:
            log.warning("rename of user %d not told to peers: %s", user.id, exc)
            peers = []
        for peer in peers:
            outbox.to_user(peer, wire.UserChanged(user=user.ref))

    def _logged_in(self, user: wire.UserRef, session: Session, outbox: Outbox) -> None:
        # A fresh token on every login and auth, so an active client never runs out; `auth`
        # keeps the session its token belongs to.
        token = self.tokens.issue(user.id, session)
        outbox.reply(wire.LoggedIn(token=token, user=user), login=user, session=session.id)


def _bad_credentials() -> RequestError:
    # One answer for an unknown name and a wrong password: which one is not for the client.
    return RequestError("bad_credentials", "wrong username or password")

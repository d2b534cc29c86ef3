"""What the tests share, one idea per module:

- ``stack``: the whole stack in this process (services as tasks, gateways on free ports), and
  ``running`` for one service as a task;
- ``processes``: the stack as separate OS processes, for tests that kill them;
- ``fake_gateway``: talk to a request service the way a gateway does, over Redis;
- ``tcp_proxy``: a forwarder to cut and restore a service's link to a server;
- ``users``: the test password, registered users on real gateways, their ids;
- ``dialogs``: the only place that knows how a dialog id and its table are spelt;
- ``protocol``: assertions on wire frames (errors, messages, a connection still alive);
- ``polling``: ``wait_until``, the one way a test waits for the system to settle;
- ``db``: a dialog's stored rows, and waiting for them;
- ``stream_messages``: messages put on the messages stream as chat_service does;
- ``layout``: the partitioned key and stream names as the test stacks run them (CHAT_PARTITIONS);
- ``servers``: the Valkey and PostgreSQL servers the session runs on.
"""

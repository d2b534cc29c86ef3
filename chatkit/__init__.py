"""What every service of the chat backend shares: settings, key names, wire and broker schemas,
and the Redis and PostgreSQL helpers. Nothing in here starts a server or reads the environment
on import."""

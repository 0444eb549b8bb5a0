"""Serving: configuration, the live pack, reload, the supervisor, gRPC, observability."""

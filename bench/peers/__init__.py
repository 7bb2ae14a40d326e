"""Peer apps doing the same protected-route work as authsvc, measured in the same run."""

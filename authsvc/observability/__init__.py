"""What operators see of a running gateway: the request log (and its request ids)."""

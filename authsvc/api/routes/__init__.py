"""Thin routers: parse, call a service or protocol module, translate domain errors."""

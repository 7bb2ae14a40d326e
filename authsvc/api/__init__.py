"""HTTP layer: dependency chains and thin routers."""

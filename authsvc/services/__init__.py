"""Business rules, free of HTTP: routes translate these domain errors to responses."""

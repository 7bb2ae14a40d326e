"""Security primitives: passwords, signing keys and tokens, each behind one module."""

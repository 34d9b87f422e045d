"""What the tests share beyond fixtures: databases, servers, clients, proxies, identity.

Fixtures live in tests/conftest.py; the helpers they and the tests use live here, so a test
module imports what it needs from a module named for it, never from conftest.
"""

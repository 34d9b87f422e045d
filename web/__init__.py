"""The HTTP edge: the GraphQL view, authentication, the request body and the access log.

server.py wires these to the settings; nothing here reads the environment or imports server.
"""

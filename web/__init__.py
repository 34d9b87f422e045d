"""The server: its settings (settings.py, the one place the environment is read), the app and
its lifespan (app.py), start-up (startup.py), background jobs (jobs.py) and the uvicorn runtime
(serving.py); and the HTTP edge: the GraphQL view, authentication, the request body and the
access log. server.py holds the command line; nothing here imports it.
"""

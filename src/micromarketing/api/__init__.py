"""The REST API (FastAPI): thin routes over the Workspace facade, API keys with roles, problem details.

``micromarketing serve`` runs :func:`create_app` under uvicorn; tests build the app directly.
"""

from micromarketing.api.app import create_app

__all__ = ["create_app"]

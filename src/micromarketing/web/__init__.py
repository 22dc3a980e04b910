"""The marketers' dashboard: server-rendered pages over the Workspace facade, mounted at ``/``.

``micromarketing serve`` passes :data:`router` to the API's ``create_app(pages=[router])``; the
pages share the API's workspace holder and its keys and roles (see :mod:`.session`).
"""

from micromarketing.web.pages import router

__all__ = ["router"]

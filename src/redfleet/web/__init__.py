"""The web dashboard of ``redfleet serve``: server-rendered pages (Jinja2) over the REST API, with small plain
JavaScript for what must be live (the rack view, plots, actions). Everything it needs ships in this package
(templates/, static/): no CDN, no build step.

``mount(app)`` adds ``/`` (fleet overview), ``/login``, ``/logout``, ``/nodes/{name}``, ``/remediation``,
``/ssd``, ``/conformance`` and ``/static/``; :func:`redfleet.api.app.create_app` calls it.
"""

from redfleet.web.pages import mount

__all__ = ["mount"]

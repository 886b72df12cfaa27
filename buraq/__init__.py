"""buraq: YAML pipelines on Redis Streams.

The public API: ``hookimpl`` for plugins, ``Task`` and ``Reject`` for handlers, ``Client`` and
``AsyncClient`` for producers.
"""

__version__ = "0.1.0"  # first, so modules imported below may read it

from buraq.client import AsyncClient, Client
from buraq.failures import Reject
from buraq.hookspecs import hookimpl
from buraq.task import Task

__all__ = ["AsyncClient", "Client", "Reject", "Task", "hookimpl", "__version__"]

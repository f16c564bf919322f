"""Built-in handlers, one module per Brigade module; importing this registers them."""

from worker.handlers import crm, dispatch, loyalty, ordering, platform  # noqa: F401

"""Built-in handlers, one module per Brigade module; importing this registers them."""

from worker.handlers import bookings, crm, loyalty, ordering, platform  # noqa: F401

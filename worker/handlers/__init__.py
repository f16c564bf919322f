"""Built-in handlers, one module per Brigade module; importing this registers them."""

from worker.handlers import (  # noqa: F401
    bookings,
    campaigns,
    crm,
    dispatch,
    gift_cards,
    loyalty,
    messaging,
    ordering,
    platform,
    voice,
)

"""One router per resource; each handler validates, calls the store and converts to the wire."""

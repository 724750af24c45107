"""The service menu in the browser (server-rendered Django + HTMX)."""

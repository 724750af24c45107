"""The service menu's views, one small module per page (every view gets the viewer's ``Scope``)."""

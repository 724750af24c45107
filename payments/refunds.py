"""Refunds from the service menu (being written: interface fixed, see request_refund)."""

"""Command and event schemas of the example domain, shared by the services that speak them."""

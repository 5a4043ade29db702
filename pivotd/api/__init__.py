"""HTTP and WebSocket routes, one module per route family or resource."""

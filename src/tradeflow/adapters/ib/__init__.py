"""Interactive Brokers (TWS or IB Gateway) through ib_async: daily bars (data), the broker
(execution), the pure translation tables (parsing) and the client set-up both share (client)."""

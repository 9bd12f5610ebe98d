"""Townsquare's reusable real-time core: streams, publish, fan-out and the `/ws/` protocol.

It knows nothing of chat or shop. Apps register stream kinds (`realtime.registry`) and
client actions, and publish events (`realtime.publish`) from their services.
"""

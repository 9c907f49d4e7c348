"""A controller runtime on asyncio and kubernetes-asyncio: client, informers, shared cache, work queues, manager.

Generic by design: nothing in this package knows about kaito.
"""

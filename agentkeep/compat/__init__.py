"""Facades that keep other persistence layers' APIs working over the agentkeep store.

``agentkeep.compat.curio``: the ``curio_agent_sdk.persistence`` API
(``BasePersistence``, ``SQLitePersistence``, ``PostgresPersistence``,
``InMemoryPersistence``, ``DatabaseConfig``), method for method.
"""

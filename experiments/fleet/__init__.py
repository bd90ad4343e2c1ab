"""The fleet: many hosts sharing one storage (PostgreSQL).

- :mod:`.hosts`: the host registry (each agent's labels, facts and heartbeat), in the shared storage; its
  schema migrations (alembic) in ``migrations/``; :mod:`.metrics`: the agents on ``/metrics``.
- :mod:`.agent`: ``novatune agent``: takes the trials of the fleet studies that target its labels, runs them
  on its host through its own journal, and reports them; Optuna's heartbeats fail a dead agent's trial.
"""

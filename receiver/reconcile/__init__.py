"""Reconcile (CONTRACT section 6): read every Salesforce User, plan, store the plan, apply.

- ``tables``: the ``reconcile_plan`` table;
- ``plans``: store and read plans (rows as one compressed document);
- ``state``: the stored state a plan is decided against;
- ``run``: the run, apply and reject functions shared by the CLI and the dashboard;
- ``apply``: rows decided again and written through the receiver's apply path.

The pure rules are ``sf_metadata.reconcile``; the Salesforce reading ``deployer.users``.
"""

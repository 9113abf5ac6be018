"""The helpdesk demo app, shipped inside stalwart: a triage agent hands support tickets to
a resolver agent with four tools, on the simulated models and services.

It is what ``stalwart verify``, ``stalwart chaos`` and ``stalwart sim --scenario`` default
to, so that they work from an installed wheel in an empty directory:

- ``stalwart.demo.app:app``       the App (``stalwart run stalwart.demo.app:app``)
- ``stalwart.demo.app:SCENARIO``  what the simulated model does with a ticket
- ``stalwart.demo.tickets:generate``  a seeded ticket generator (the verify workload)
- ``stalwart.demo.redteam:run_redteam``  the injection corpus against a gullible model

``examples/helpdesk`` in the repository names these same objects (it holds no copy).
"""

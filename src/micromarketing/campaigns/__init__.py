"""Campaigns: the campaign file (spec), deterministic assignment to control and variants, the one
contact policy (consent, suppressions, frequency caps, quiet hours), the plan, and the run that
writes assignments and outbox rows for the delivery worker.

Reached as ``ws.campaigns`` (:class:`~micromarketing.campaigns.service.Campaigns`).  The delivery
worker imports two seams from here: :func:`micromarketing.campaigns.policy.decide` and
:func:`micromarketing.campaigns.ingredients.render_frozen`.
"""

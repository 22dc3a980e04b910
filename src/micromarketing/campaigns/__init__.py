"""Campaigns: spec, plan, assignment, contact policy, the outbox and its delivery workers."""

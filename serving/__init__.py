"""The service chatbots, agents and campaigns call: its doors and its memory.

- The doors: REST (:mod:`serving.http`: BentoML outside, a FastAPI app of routes inside),
  MCP for LLM agents (:mod:`serving.mcp`), Segment-spec messages (:mod:`serving.segment`) and
  the batch of every customer at once (:mod:`serving.outbound`, ``nextbest suggest``). They
  share the request and answer models (:mod:`serving.schemas`), the callers' keys
  (:mod:`serving.security`) and one code path for every answer (:mod:`serving.answers`).
- The memory (:mod:`serving.memory`): the consent-aware served state, the online log every
  worker applies, the feedback store and the audit log.

What to propose and why is decided in :mod:`policy`. Loads and scores champions through
:mod:`training.registry` and :mod:`training.scoring` only; never imports the training pipeline
(checked by import-linter).
"""

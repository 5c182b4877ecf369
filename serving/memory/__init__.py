"""What the service holds and records: the served state (:mod:`serving.memory.state`, loaded
from a snapshot by :mod:`serving.memory.snapshot`, changed by online rows in
:mod:`serving.memory.updates`), the runtime that swaps it (:mod:`serving.memory.runtime`), the
online log every worker applies (:mod:`serving.memory.online`), the feedback store
(:mod:`serving.memory.feedback`), the audit log (:mod:`serving.memory.audit`) and the logged
decisions off-policy evaluation reads (:mod:`serving.memory.decisions`)."""

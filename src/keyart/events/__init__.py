"""Decision and outcome records: their versioned Arrow schemas, JSON context, and whole-batch validation.

A *decision* row (one per (member, title) choice, id = the decision id) carries everything learning and
evaluation need later: the member context as JSON, the pool, the full probability vector, the shown
artwork, the policy and model version, whether it explored. An *outcome* row is what the member did:
``impression``, ``play``, ``stop``, ... with engaged seconds; it names its decision when the client knew
it, else only member and title (``keyart.rewards`` attributes it).

Decision rows have one format, built one way (``keyart.events.rows.DecisionColumns``): from a policy's
``DecisionBatch`` (``decisions_from_batch``) and from the page records the service logs (``page_record``
on the decide path, ``page_rows`` in the learner). ``DecisionRecord`` is one such row as an object.

The package: ``records`` (the record types) and
- ``keyart.events.schema``: versions, limits, the Arrow schemas, the context JSON;
- ``keyart.events.tables``: whole-batch validation into tables (``decisions_table``, ``outcomes_table``);
- ``keyart.events.rows``: decisions by column, ``decisions_from_batch``, the service's log records
  (``page_record``, ``outcomes_record``).

Schema history (bump ``SCHEMA_VERSION`` and document every change here):
- 1: first version.
"""

from __future__ import annotations

from keyart.events.records import DecisionRecord, OutcomeRecord
from keyart.events.rows import (
    OUTCOMES_RECORD,
    PAGE_RECORD,
    DecisionColumns,
    decisions_from_batch,
    decode_probabilities,
    encode_probabilities,
    outcomes_record,
    page_probabilities,
    page_record,
    page_rows,
    shadow_record,
)
from keyart.events.schema import (
    DECISION_SCHEMA,
    EVENT_TYPES,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    OUTCOME_SCHEMA,
    PROB_SUM_TOL,
    SCHEMA_VERSION,
    context_from_json,
    context_to_dict,
    context_to_json,
    context_to_json_fast,
    schema_version,
)
from keyart.events.tables import decisions_table, outcomes_table

__all__ = [
    "DECISION_SCHEMA",
    "EVENT_TYPES",
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "OUTCOMES_RECORD",
    "OUTCOME_SCHEMA",
    "PAGE_RECORD",
    "PROB_SUM_TOL",
    "SCHEMA_VERSION",
    "DecisionColumns",
    "DecisionRecord",
    "OutcomeRecord",
    "context_from_json",
    "context_to_dict",
    "context_to_json",
    "context_to_json_fast",
    "decisions_from_batch",
    "decisions_table",
    "decode_probabilities",
    "encode_probabilities",
    "outcomes_record",
    "outcomes_table",
    "page_probabilities",
    "page_record",
    "page_rows",
    "schema_version",
    "shadow_record",
]

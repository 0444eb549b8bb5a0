"""fenliu (分流): rule-driven routing and triage of citizen complaints, petitions and disputes.

Data flows one way: YAML pack → load (keeping file:line) → validate → compile → prepared engine →
decide(complaint) → decision + trace → transport (gRPC / CLI).
"""

__version__ = "0.1.0"

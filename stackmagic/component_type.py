"""The four kinds of stack component; a module of its own so the magics load fast."""

from __future__ import annotations

import enum


class ComponentType(str, enum.Enum):
    ARTIFACT_STORE = "artifact-store"
    METADATA_STORE = "metadata-store"
    ORCHESTRATOR = "orchestrator"
    STEP_OPERATOR = "step-operator"
    EXPERIMENT_TRACKER = "experiment-tracker"

    @property
    def noun(self) -> str:
        """``"artifact store"``: how messages speak of the type."""
        return self.value.replace("-", " ")

    @property
    def a_noun(self) -> str:
        """``"an artifact store"``."""
        return ("an " if self.noun[0] in "aeiou" else "a ") + self.noun

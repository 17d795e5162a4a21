"""``python -m stackmagic.orchestrators.kfp_local PIPELINE.yaml OUTPUTS ARGUMENTS``.

Runs a compiled pipeline on this machine with ``kfp.local``, each task a
subprocess of this Python. It runs as a process of its own: ``kfp.local``'s
configuration is global and it prints every task's output, neither of which
belongs in the kernel or terminal that started the run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    from kfp import components, local

    package, outputs, arguments = argv
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=outputs)
    pipeline = components.load_component_from_file(package)
    try:
        pipeline(**json.loads(arguments))
    except RuntimeError as failure:  # a task failed; the tasks recorded why
        print(f"kfp.local: {failure}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

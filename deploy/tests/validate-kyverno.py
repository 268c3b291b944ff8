"""Validates Kyverno ClusterPolicy objects against the kyverno.io/v1 schema, through the typed models of the
cloudcoil-models-kyverno package (generated from Kyverno's CRDs).

The models ignore fields they do not know, so an object is valid when it loads and reads back unchanged:
a misspelt or misplaced field is reported as lost. Input: one JSON object per line on stdin. Prints one line
per object; exits 1 when any is invalid. Run by crates/wharf/tests/e2e/deploy.rs.
"""

import json
import sys

from cloudcoil.models.kyverno.v1 import ClusterPolicy


def differences(before, after, path=""):
    if isinstance(before, dict) and isinstance(after, dict):
        for k, v in before.items():
            if k not in after:
                yield f"{path}/{k}: not a field of the schema"
            else:
                yield from differences(v, after[k], f"{path}/{k}")
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after)):
            yield from differences(b, a, f"{path}/{i}")
    elif before != after:
        yield f"{path}: {before!r} read back as {after!r}"


failed = False
for line in sys.stdin:
    if not line.strip():
        continue
    doc = json.loads(line)
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    try:
        if doc.get("apiVersion") != "kyverno.io/v1" or doc.get("kind") != "ClusterPolicy":
            raise ValueError("not a kyverno.io/v1 ClusterPolicy")
        model = ClusterPolicy.model_validate(doc)
        back = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
        lost = list(differences(doc, back))
        if lost:
            raise ValueError("; ".join(lost))
        print(f"valid {name}")
    except Exception as e:
        print(f"invalid {name}: {e}")
        failed = True
sys.exit(1 if failed else 0)

"""Evaluates a MutatingAdmissionPolicy's ApplyConfiguration mutations on sample pods, as the API server would.

The CEL expressions run in cel-python (celpy); the apply configurations they return are merged into the pod
with server-side apply's rules for the lists involved (list-type "map" lists merged by their keys, read from
the Kubernetes API schemas of kubernetes-validate), one mutation after the other.

Input (stdin, JSON): {"policy": <MutatingAdmissionPolicy>, "pods": [<Pod>, ...], "schemas": "<dir>"}.
Output (stdout, JSON): [{"pod": <mutated Pod>} or {"error": "..."}, ...], one per input pod.
Run by crates/wharf/tests/e2e/deploy.rs with celpy and kubernetes_validate on PYTHONPATH.
"""

import copy
import json
import os
import sys

import celpy
from celpy import celtypes


class TypeName(celtypes.MapType):
    """A Kubernetes CEL object type (`Object`, `Object.spec.containers`...): `T{f: v}` builds its fields."""

    def __init__(self, name):
        super().__init__({})
        self.name = name

    def __getitem__(self, key):
        return TypeName(f"{self.name}.{key}")

    def __call__(self, fields=None):
        return celtypes.MapType(fields or {})


def plain(value):
    """A celpy value as plain JSON data."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if value is None:
        return None
    raise TypeError(f"unexpected CEL value {value!r}")


def list_map_keys(schemas):
    """Field name -> key fields, for the Pod's list-type "map" lists that the policies touch."""
    keys = {}
    for name in ("podspec-v1.json", "container-v1.json"):
        with open(os.path.join(schemas, name)) as f:
            props = json.load(f)["properties"]
        for field, schema in props.items():
            if schema.get("x-kubernetes-list-type") == "map":
                keys[field] = schema["x-kubernetes-list-map-keys"]
    return keys


def merge(base, patch, keys, field=None):
    """`patch` applied to `base` with server-side apply's merge: maps merged, list-map entries merged by key,
    other lists and scalars replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v, keys, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and field in keys:
        key = lambda item: tuple(item.get(k) for k in keys[field])
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            match = [i for i, old in enumerate(out) if key(old) == key(item)]
            if match:
                out[match[0]] = merge(out[match[0]], item, keys, None)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def main():
    data = json.load(sys.stdin)
    policy = data["policy"]
    keys = list_map_keys(data["schemas"])
    env = celpy.Environment()
    mutations = []
    for m in policy["spec"]["mutations"]:
        if m["patchType"] != "ApplyConfiguration":
            raise SystemExit(f"unsupported patchType {m['patchType']}")
        mutations.append(env.program(env.compile(m["applyConfiguration"]["expression"])))
    results = []
    for pod in data["pods"]:
        try:
            current = pod
            for program in mutations:
                activation = {
                    "object": celpy.json_to_cel(current),
                    "oldObject": None,
                    "Object": TypeName("Object"),
                }
                applied = program.evaluate(activation)
                if isinstance(applied, Exception):
                    raise applied
                current = merge(current, plain(applied), keys)
            results.append({"pod": current})
        except Exception as e:  # reported per pod, the test decides
            results.append({"error": f"{type(e).__name__}: {e}"})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()

"""Writes a single-platform OCI layout with LAYERS gzip layers of SIZE random bytes each (stored, not
compressed, so building it is fast). Usage: make_image.py DIR LAYERS SIZE; prints the manifest digest."""
import gzip, hashlib, json, os, sys
out = sys.argv[1]; layers = int(sys.argv[2]); size = int(sys.argv[3])
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(f"{out}/blobs/sha256/{h}", "wb").write(b)
    return "sha256:" + h
descs, diff_ids = [], []
for i in range(layers):
    raw = os.urandom(size)
    gz = gzip.compress(raw, compresslevel=0)
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(gz), "size": len(gz)})
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)},
    "layers": descs}).encode()
md = put(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
    "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "1"}}]}, open(f"{out}/index.json", "w"))
print(md)

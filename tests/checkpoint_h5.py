"""Reads a SoME checkpoint with h5py alone (docs/design.md §7), independently of the C++ reader: the
manifest, then every tensor by its global name from the file the manifest names."""
import hashlib
import json
import os

import h5py
import numpy as np


def resolve(path):
    """A step_* directory, or a run / checkpoints directory (then the one `latest` names)."""
    if os.path.exists(os.path.join(path, "manifest.json")):
        return path
    for d in (path, os.path.join(path, "checkpoints")):
        latest = os.path.join(d, "latest")
        if os.path.exists(latest):
            return os.path.join(d, open(latest).read().strip())
    raise FileNotFoundError(f"{path}: no checkpoint")


def manifest(path):
    return json.load(open(os.path.join(resolve(path), "manifest.json")))


def load(path, verify=True):
    """{global name: numpy array} of every tensor of the checkpoint."""
    d = resolve(path)
    m = manifest(d)
    if verify:
        for f, rec in m["files"].items():
            digest = hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            assert digest == rec["sha256"], f"{d}/{f}: sha256 {digest} != manifest {rec['sha256']}"
    tensors = dict(m["tensors"])
    if m.get("library"):  # frozen experts written once, in a directory beside this one
        lib = json.load(open(os.path.join(d, m["library"], "manifest.json")))
        for f, rec in lib["files"].items():
            m["files"][os.path.join(m["library"], f)] = rec
        for name, rec in lib["tensors"].items():
            tensors[name] = dict(rec, file=os.path.join(m["library"], rec["file"]))
        if verify:
            for f in lib["files"]:
                p = os.path.join(d, m["library"], f)
                assert hashlib.sha256(open(p, "rb").read()).hexdigest() == lib["files"][f]["sha256"], p
    out, files = {}, {}
    for name, rec in tensors.items():
        f = files.setdefault(rec["file"], h5py.File(os.path.join(d, rec["file"]), "r"))
        a = f[name][()]
        assert list(a.shape) == rec["shape"], f"{name}: shape {a.shape} != manifest {rec['shape']}"
        out[name] = np.asarray(a)
    return out

"""What the reference scripts share: reading an exported HDF5 file, and comparing the reference's
tensors with the C++ ones (max absolute difference against one tolerance, one line each)."""
import h5py
import torch

TOL = 1e-5


def load(path) -> dict:
    """Every dataset of an HDF5 file written by test_reference_export, as tensors by name."""
    with h5py.File(path, "r") as f:
        return {k: torch.tensor(f[k][()]) for k in f.keys()}


def compare(checks: dict, tol: float = TOL) -> bool:
    """checks: name -> (reference, C++). Prints one line per tensor; True when every max
    |reference - C++| is within tol (compared in fp64)."""
    ok_all = True
    width = max(len(name) for name in checks)
    for name, (ref, cpp) in checks.items():
        diff = (ref.double() - cpp.double()).abs().max().item() if ref.numel() else 0.0
        ok = diff <= tol
        ok_all &= ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:{width}s} max |reference - C++| = {diff:.3e}")
    return ok_all

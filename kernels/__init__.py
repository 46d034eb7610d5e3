"""Compute kernels for tinysml, importable as ``tinysml.kernels``.

``reference`` (NumPy/CuPy array code) defines every kernel; ``cpu`` (Numba) and ``cuda`` (CuPy with
hand-written .cu sources) implement the same names and signatures, faster. Choose one with
``tinysml.set_backend``; see ``tinysml/backend.py``.
"""
